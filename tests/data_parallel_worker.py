"""One update of each trainer on a fixed global batch, in this process's share: run alone (one process, the whole
batch) or under ``accelerate launch --num_processes 2`` (each process half of it). ``tests/test_data_parallel.py``
compares the parameters the two give.

The global batch is made to need every cross-process reduction: process 0's rows have longer responses than process
1's (so a minibatch's token count differs between processes), and its rewards are larger (so a whitening or
standardisation over one process's rows alone would differ from one over all rows).

    python tests/data_parallel_worker.py OUT.pt
    accelerate launch --cpu --num_processes 2 tests/data_parallel_worker.py OUT.pt
"""

from __future__ import annotations

import sys

import torch
from stable_baselines3.common.logger import configure

from rlhf_gym.agents import DPO, GRPO, RLOO, RLHFVecEnv, TokenPPO
from rlhf_gym.agents.parallel import DataParallel
from rlhf_gym.generation import left_pad
from rlhf_gym.tasks import load_task

ROWS = 8  # responses in the global rollout (and comparisons in DPO's global minibatch)
LENGTHS = [5, 4, 5, 3, 2, 1, 2, 3]  # tokens of each response: rows 0-3 (process 0 of 2) hold 17, rows 4-7 hold 8
REWARDS = [2.0, 1.0, 3.0, 0.5, -1.0, 0.0, -0.5, 0.2]
WIDTH = max(LENGTHS)


def constant_reward(prompts, responses):
    return [0.0] * len(prompts)


def my_rows(parallel: DataParallel) -> slice:
    share = ROWS // parallel.num_processes
    return slice(parallel.process_index * share, (parallel.process_index + 1) * share)


def build(algo: str, task, parallel: DataParallel) -> TokenPPO:
    rows = my_rows(parallel)
    local = rows.stop - rows.start
    env = RLHFVecEnv(num_envs=local, task=task, prompts=task.train_prompts[:ROWS][rows], reward_model=constant_reward,
                     max_new_tokens=WIDTH, beta=0.1, group_size=1 if algo == "ppo" else 2)
    common = dict(n_epochs=2, batch_size=local, learning_rate=1e-3, seed=0, device="cpu", parallel=parallel)
    if algo == "ppo":
        agent = TokenPPO("TransformerPolicy", env, normalize_advantage=True, ent_coef=0.01, **common)
    elif algo == "rloo":
        agent = RLOO("TransformerPolicy", env, normalize_advantage=True, **common)
    else:
        agent = GRPO("TransformerPolicy", env, beta=0.04, scale_rewards="batch", **common)
    agent.set_logger(configure(None, []))
    return agent


def fill_rollout(agent: TokenPPO, parallel: DataParallel) -> None:
    """This process's rows of the global rollout: fixed tokens, the policy's own log-probs and values, and a reward
    at each response's last token; then the algorithm's advantages."""
    rows, env = my_rows(parallel), agent.batched_env
    queries, query_mask = left_pad(env.prompt_ids, env.pad_token_id)
    tokens = torch.randint(5, env.vocab_size, (ROWS, WIDTH), generator=torch.Generator().manual_seed(0))[rows]
    lengths = torch.tensor(LENGTHS[rows])
    mask = torch.arange(WIDTH)[None, :] < lengths[:, None]
    with torch.no_grad():
        logprobs, _, values = agent.policy.evaluate_sequences(queries, query_mask, tokens, mask)
    rewards = torch.tensor(REWARDS[rows])
    buffer = agent.rollout_buffer
    buffer.start(queries, query_mask)
    for t in range(WIDTH):
        buffer.add(tokens[:, t], mask[:, t], logprobs[:, t], values[:, t], torch.where(lengths - 1 == t, rewards, 0.0))
    # GRPO's reward and reference log-probs come from the final infos (the policy starts as the reference)
    episodes = {row: {"proxy_reward": float(rewards[row]), "penalty": 0.0,
                      "ref_token_logprobs": logprobs[row, :int(lengths[row])]} for row in range(len(rewards))}
    agent._compute_advantages(buffer, episodes)


def dpo_update(task, parallel: DataParallel) -> dict[str, torch.Tensor]:
    """Two DPO steps on the same ``ROWS`` comparisons (one global minibatch each)."""
    ref = task.load_policy()
    dpo = DPO(ref, ref, task.load_tokenizer(), task.reward_model_comparisons()[:ROWS], batch_size=ROWS, seed=0,
              device="cpu", parallel=parallel)
    dpo.logger = configure(None, [])
    for _ in range(2):
        dpo.train_step(list(range(ROWS)))
    return {name: p.detach().clone() for name, p in dpo.policy.named_parameters()}


def updated_parameters(parallel: DataParallel) -> dict[str, dict[str, torch.Tensor]]:
    """Each trainer's parameters after its update, by algorithm."""
    torch.manual_seed(0)
    task = load_task("reviews")
    result = {}
    for algo in ("ppo", "rloo", "grpo"):
        agent = build(algo, task, parallel)
        fill_rollout(agent, parallel)
        agent.train()
        result[algo] = {name: p.detach().clone() for name, p in agent.policy.named_parameters()}
    result["dpo"] = dpo_update(task, parallel)
    return result


if __name__ == "__main__":
    parallel = DataParallel.from_launch()
    parameters = updated_parameters(parallel)
    if parallel.is_main_process:
        torch.save({"processes": parallel.num_processes, "parameters": parameters}, sys.argv[1])
    parallel.barrier()
