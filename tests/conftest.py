"""Shared fixtures: the shipped reviews task and small helpers."""

import os

import pytest
import torch
from transformers.utils import logging as hf_logging

from rlhf_gym.tasks import load_task

# 2 torch threads in one process (`-n 0`); under pytest-xdist (`-n auto`, one worker per CPU) the CPUs shared among the
# workers, at most 2 each. The tests' fixed-seed values hold at 1 and 2 threads.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))
hf_logging.disable_progress_bar()


@pytest.fixture(scope="session", autouse=True)
def sb3_log_dir(tmp_path_factory):
    """SB3's logger makes a folder ``SB3-<time>`` in the system's temporary directory for every ``learn()`` without a
    log directory, unless ``SB3_LOGDIR`` names one: the session's temporary path instead (subprocesses inherit it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SB3_LOGDIR", str(tmp_path_factory.mktemp("sb3_logs")))
        yield


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
