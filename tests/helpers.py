"""Test helpers shared by several test files."""

import json
import random
from pathlib import Path

import pytest
import torch

from rlhf_gym.cli import run_command


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Import into a test module of tiny models: they gain nothing from threads, and on a busy machine torch's spinning
    threads slow them 40-80x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class NoCallback:
    """The minimal callback interface that ``TokenPPO.collect_rollouts`` calls, doing nothing."""

    def on_rollout_start(self):
        pass

    def on_rollout_end(self):
        pass

    def update_locals(self, _):
        pass

    def on_step(self):
        return True


def cli_error(capsys, command, argv):
    """Run ``rlhf-gym <command> argv`` in-process; assert it ends in one ``error:`` line with exit code 1; return it."""
    with pytest.raises(SystemExit) as exit_info:
        run_command(command, [str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 1, err
    lines = err.splitlines()
    assert lines[-1].startswith("error: ") and sum(line.startswith("error: ") for line in lines) == 1, err
    assert "Traceback" not in err, err
    return lines[-1]


def fake_run(directory: Path, gold: float, seconds: float = 10.0) -> Path:
    """A run directory with the summary.json and args.json that ``rlhf-gym summarize`` reads."""
    directory.mkdir(parents=True)
    figures = {"proxy_reward": 0.0, "gold_reward": gold, "kl": 1.0}
    (directory / "summary.json").write_text(json.dumps({"before": {**figures, "gold_reward": 0.0}, "after": figures,
                                                        "seconds": seconds, "device": "cpu"}))
    (directory / "args.json").write_text(json.dumps({"algo": "nlpo"}))
    return directory


def generator_samples(world, n: int = 5000, seed: int = 0) -> list[tuple[str, str]]:
    """``n`` (prompt, response) texts of a task world's SFT generator (the stand-in for its SFT policy)."""
    rng = random.Random(seed)
    return [world.sample_text(rng) for _ in range(n)]


def held_out_sample(world, n: int = 300, seed: int = 1) -> list[str]:
    """``n`` of a task world's held-out prompts, drawn with ``seed``."""
    return random.Random(seed).sample(world.prompt_split()[1], n)



def record_pid_and_sleep(directory: str, seconds: float) -> None:
    """A slow job of a process pool: writes its process id to ``directory/<pid>``, then sleeps."""
    import os
    import time

    (Path(directory) / str(os.getpid())).touch()
    time.sleep(seconds)


def write_word_comparisons(path: Path) -> Path:
    """Sixteen distinct comparisons of the reviews task's words (a good adjective over a bad one) as JSONL at ``path``:
    the offline trainers' end-to-end data (exact duplicates would be left out of training)."""
    records = [{"prompt": prompt, "chosen": f"{adverb} {good} .", "rejected": f"{adverb} {bad} ."}
               for prompt in ("the soup was", "our waiter seemed") for adverb in ("really", "not")
               for good, bad in (("great", "rude"), ("tasty", "bad"), ("lovely", "slow"), ("friendly", "rude"))]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def check_task_env(env_id: str):
    """Make a registered task env id offline (in seconds: generous for a loaded CI machine), run Gymnasium's and
    SB3's env checkers on it, check its budget is its task's, and return the env."""
    import time

    import gymnasium as gym
    from gymnasium.utils.env_checker import check_env as gym_check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    import rlhf_gym  # noqa: F401  (registers the ids)
    from rlhf_gym.registration import task_of
    from rlhf_gym.tasks import world_of

    started = time.perf_counter()
    env = gym.make(env_id)
    assert time.perf_counter() - started < 30
    gym_check_env(env.unwrapped, skip_render_check=True)
    sb3_check_env(env.unwrapped, warn=True)
    assert env.unwrapped.max_new_tokens == world_of(task_of(env_id)).max_new_tokens
    return env
