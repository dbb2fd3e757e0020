"""rlhf-gym: reinforcement learning from human feedback as a library.

``import rlhf_gym`` registers the Gymnasium environment ids (``RLHF-v0``, ...).
"""

__version__ = "0.8.0"

from .preferences import PreferenceDataError, load_preferences
from .reward_model import RewardModel, bradley_terry_loss
from .tasks import Task, load_task


from .registration import register_envs

register_envs()

__all__ = ["PreferenceDataError", "RewardModel", "Task", "bradley_terry_loss", "load_preferences", "load_task"]
