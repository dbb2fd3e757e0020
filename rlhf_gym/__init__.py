"""rlhf-gym: reinforcement learning from human feedback as a library.

``import rlhf_gym`` registers the Gymnasium environment ids (``RLHF-v0``, ...).
"""

__version__ = "0.1.0"

from .preferences import PreferenceDataError, load_preferences  # noqa: E402
from .reward_model import RewardModel, bradley_terry_loss  # noqa: E402
from .tasks import Task, load_task  # noqa: E402


from .registration import register_envs  # noqa: E402

register_envs()

__all__ = ["PreferenceDataError", "RewardModel", "Task", "bradley_terry_loss", "load_preferences", "load_task"]
