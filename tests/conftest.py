"""Shared fixtures: the shipped reviews task and small helpers."""

import pytest
import torch
from transformers.utils import logging as hf_logging

from rlhf_gym.tasks import load_task

torch.set_num_threads(2)
hf_logging.disable_progress_bar()


@pytest.fixture(scope="session")
def task():
    return load_task("reviews")


@pytest.fixture(scope="session")
def tokenizer(task):
    return task.load_tokenizer()


@pytest.fixture(scope="session")
def ref_model(task):
    return task.load_policy()


@pytest.fixture(scope="session")
def reward_model(task):
    return task.load_reward_model()
