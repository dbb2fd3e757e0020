"""Train an online method on a task's env with another reward, and score it as the leaderboard does.

A development tool for issue 27's question "how good must the proxy be for PPO at the default beta to reach a
normalised score of 0.4?": the env id's registered settings (beta 0.1, the task's prompts, PPO's defaults and the
leaderboard's budget of 12,800 responses; ``--kl-coef``, ``--learning-rate``, ``--critic`` and ``--total-responses``
change them), with the reward swapped for

* ``--reward gold``: the task's gold reward itself, divided by its std on the SFT policy's samples of train prompts
  (the same 1,000 samples, and the same scaling, as a v1 reward model's ``reward_standardise``), so that beta weighs the
  KL against the same spread of reward: a perfect proxy, the most any proxy could give the method at this budget;
* ``--reward DIR``: a saved reward model (``tools/reward_recipe.py --save DIR``).

Each seed's policy is scored by the leaderboard's protocol (``rlhf-gym leaderboard``'s ``score``: all 1,024 held-out
prompts, sampling seed 0), so its normalised score compares with the leaderboard's rows. Each seed's record is written
to ``--out-dir`` as it finishes, and a rerun skips the seeds stored there; the mean and 95 % interval over every stored
seed are printed::

    python tools/reward_swap.py --env-id RLHF-Lists-v1 --reward gold --seeds 0,1,2 --workers 2
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

import numpy as np

from rlhf_gym.agents.critic_settings import CRITICS
from rlhf_gym.agents.experiment import DEFAULT_TOTAL_RESPONSES, TrainConfig, build_env_and_agent
from rlhf_gym.dispatch import Job, run_all
from rlhf_gym.files import atomic_write_json, read_json
from rlhf_gym.registration import task_of
from rlhf_gym.statistics import mean_interval
from rlhf_gym.studies import leaderboard
from rlhf_gym.tasks import load_task, world_of
from rlhf_gym.tasks.building import N_STANDARDISATION_SAMPLES, BuildConfig, standardisation_samples

GOLD = "gold"


class StandardisedGold:
    """``r(x, y) = G(x, y) / s``, ``s`` the std of gold on the SFT policy's samples of train prompts."""

    def __init__(self, task_name: str):
        task, world = load_task(task_name), world_of(task_name)
        prompts, responses = standardisation_samples(task.train_prompts, task.load_policy(), task.load_tokenizer(),
                                                     BuildConfig.for_world(world), N_STANDARDISATION_SAMPLES)
        self.gold_reward = world.gold_reward
        self.scale = float(np.std([world.gold_reward(p, r) for p, r in zip(prompts, responses)]))

    def __call__(self, prompts, responses) -> np.ndarray:
        return np.array([self.gold_reward(p, r) for p, r in zip(prompts, responses)]) / self.scale


def train_and_score(env_id: str, algo: str, reward: str, seed: int, total_responses: int, out_dir: str,
                    kl_coef: float | None = None, learning_rate: float | None = None, critic: str | None = None) -> dict:
    """One seed: train ``algo`` on ``env_id`` with ``reward`` (and ``kl_coef``, ``learning_rate`` and ``critic``, None:
    the env's beta and the method's defaults), export the policy, score it by the leaderboard's protocol."""
    reward_model = StandardisedGold(task_of(env_id)) if reward == GOLD else reward
    _, model = build_env_and_agent(TrainConfig(algo=algo, env_id=env_id, seed=seed, reward_model=reward_model,
                                               kl_coef=kl_coef, learning_rate=learning_rate,
                                               critic=critic))
    model.learn_run(total_responses, None, total_responses, False, resumed=False)
    policy_dir = Path(out_dir) / f"policy_seed{seed}"
    model.export_pretrained(policy_dir)
    scored = leaderboard.score(str(policy_dir), leaderboard.Args(env_id=env_id, methods="sft"))
    record = {k: scored[k] for k in ("gold_reward", "normalised_score", "proxy_reward", "kl", "well_formed")}
    record.update(seed=seed, env_id=env_id, algo=algo, reward=reward, total_responses=total_responses, kl_coef=kl_coef,
                  learning_rate=learning_rate, critic=critic)
    if reward == GOLD:
        record["gold_scale"] = reward_model.scale
    return record


def record_path(out_dir: str, seed: int) -> Path:
    return Path(out_dir) / f"record_seed{seed}.json"


def store(out_dir: str, record: dict) -> None:
    atomic_write_json(record_path(out_dir, record["seed"]), record)
    print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-id", default="RLHF-Lists-v1")
    parser.add_argument("--algo", default="ppo", help="an online algorithm")
    parser.add_argument("--reward", default=GOLD, help="'gold' or a reward model directory")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--total-responses", type=int, default=DEFAULT_TOTAL_RESPONSES)
    parser.add_argument("--kl-coef", type=float, default=None, help="beta (default: the env's)")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the method's")
    parser.add_argument("--critic", choices=CRITICS, default=None, help="ppo, nlpo (default: shared)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out-dir", default="runs/reward_swap")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    jobs = [Job(f"seed {seed}", train_and_score, (args.env_id, args.algo, args.reward, seed, args.total_responses,
                                                   args.out_dir, args.kl_coef, args.learning_rate, args.critic),
                partial(store, args.out_dir))
            for seed in seeds if not record_path(args.out_dir, seed).exists()]
    run_all(jobs, args.workers)
    records = [read_json(path) for path in sorted(Path(args.out_dir).glob("record_seed*.json"))]
    settings = {(r["env_id"], r["algo"], r["reward"], r["total_responses"], r.get("kl_coef"),
                 r.get("learning_rate"), r.get("critic")) for r in records}
    if len(settings) > 1:
        raise SystemExit(f"{args.out_dir} holds records of different runs: {sorted(settings)}")
    for name in ("normalised_score", "gold_reward", "kl"):
        values = [r[name] for r in records if r[name] is not None]  # RLHF-v0 has no ceiling: no normalised score
        if values:
            interval = mean_interval(values)
            print(f"{name}: {interval.mean:.3f} ± {interval.half_width:.3f} over {len(values)} seeds")


if __name__ == "__main__":
    main()
