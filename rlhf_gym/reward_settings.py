"""Reward-model training's settings, the shipped recipe's epochs and the metadata file of a saved reward model:
readable without importing torch (a command's ``--help`` shows them as defaults); :mod:`rlhf_gym.reward_training`
trains and saves with them."""

from __future__ import annotations

from dataclasses import dataclass

METADATA_FILE = "reward_metadata.json"
"""Written next to a saved reward model; a directory holding it is one that a new save may replace."""

REWARD_POOLINGS = ("last", "sum", "mean")
"""How a reward model reads its score off the text's positions: at the last token, or summed or averaged over the
response's tokens (:class:`rlhf_gym.reward_model.RewardModel`)."""

REWARD_EPOCHS = 4
"""Reward-model passes of the shipped recipe (the reviews task's reward model and ensemble members)."""


@dataclass
class RewardTrainingConfig:
    """Settings of :func:`rlhf_gym.reward_training.train_reward_model`."""

    epochs: int = REWARD_EPOCHS
    """Passes over the training comparisons."""
    batch_size: int = 32
    """Comparisons per optimizer step."""
    learning_rate: float = 1e-3
    """Peak AdamW learning rate (linear decay to 0)."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    eval_fraction: float = 0.1
    """Share of the distinct pairs held out for evaluation (see :func:`rlhf_gym.reward_training.split_records`)."""
    center_rewards_coef: float = 0.0
    """Weight of the reward-centering term ``E[(r_w + r_l)^2]``; 0 turns it off."""
    use_margin: bool = True
    """Use a ``margin`` column when the data has one."""
    seed: int = 0
    """Seed of the split, the shuffling and the initialisation."""
