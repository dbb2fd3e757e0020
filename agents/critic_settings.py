"""Where TokenPPO's value function lives (``rlhf-gym train --critic``): the choices, readable without torch.

* ``shared``: a linear head on the policy's own trunk (the default). The value loss then moves the policy's weights
  too (weighed by ``vf_coef``).
* ``separate``: a linear head on a trainable copy of the starting policy's trunk, zero-initialised; the value loss
  moves the critic only (Huang et al. 2022 discuss both layouts).
* ``reward_model``: a copy of the env's reward model, trunk and score head, as the critic (InstructGPT, Ouyang et al.
  2022: "we initialize the value function from the RM"). Its first values are the reward model's per-position scores,
  so the first advantages carry the reward's signal before the critic has learnt anything. Needs a reward model saved
  in a directory with the policy's tokenizer: the critic reads the policy's token ids.
"""

from __future__ import annotations

SHARED, SEPARATE, REWARD_MODEL = "shared", "separate", "reward_model"
CRITICS = (SHARED, SEPARATE, REWARD_MODEL)
"""``--critic`` values."""
