"""Long response budgets: the KV cache compacted as rows finish (rlhf_gym.generation.CacheRows), with the same samples
and rollouts as the full batch and fewer rows per step, and PPO's update in length buckets; short budgets keep both off."""

import pytest
import torch
from stable_baselines3.common.callbacks import BaseCallback
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from helpers import one_thread  # noqa: F401  (tiny models: one torch thread)
from rlhf_gym import generation
from rlhf_gym.agents import RLHFVecEnv, TokenPPO
from rlhf_gym.agents.buckets import LONG_BUDGET_BUCKETS
from rlhf_gym.benchmarks.workloads import Workload, build_models, raise_stop_logit
from rlhf_gym.generation import CacheRows, left_pad, long_budget, sample, select_cache_rows

LONG = Workload("long-test", n_layer=1, n_embd=32, vocab_size=64, prompt_length=4, response_length=80, rollout_batch=32,
                n_positions=128, stop_rate=1 / 12)
"""A tiny policy whose responses end at EOS after about 12 tokens, a few running to the budget of 80."""


@pytest.fixture(scope="module")
def long_files(tmp_path_factory):
    return build_models(LONG, tmp_path_factory.mktemp("long"), seed=0)


def counting_selects(monkeypatch) -> list[int]:
    """Record the rows kept by every cache cut (``select_cache_rows``), wherever it is called from."""
    kept: list[int] = []
    original = generation.select_cache_rows

    def counted(cache, index):
        kept.append(index.numel())
        return original(cache, index)

    monkeypatch.setattr(generation, "select_cache_rows", counted)
    return kept


def test_rows_are_dropped_only_when_at_most_half_are_alive_and_never_below_the_floor():
    cached = CacheRows(32, "cpu", enabled=True)
    cache = ((torch.arange(32.0)[:, None], torch.arange(32.0)[:, None]),)  # one layer's (key, value), legacy layout
    alive = torch.ones(32, dtype=torch.bool)
    alive[:15] = False  # 17 of 32 alive: more than half, nothing dropped
    assert cached.compact(alive, cache) == (cache,) and cached.rows.numel() == 32
    alive[15] = False  # 16 of 32: cut to the live rows, in order
    (cut,) = cached.compact(alive, cache)
    assert cached.rows.tolist() == list(range(16, 32)) and cut[0][0].squeeze(-1).tolist() == list(range(16, 32))
    alive[16:20] = alive[28:] = False  # 8 of the 16 held (batch rows 20 to 27): cut again, to the floor
    (cut,) = cached.compact(alive, cut)
    assert cached.rows.tolist() == list(range(20, 28)) and cut[0][0].squeeze(-1).tolist() == list(range(20, 28))
    alive[20] = False  # 7 of the 8 held: under MIN_CACHED_ROWS, kept as they are
    assert cached.compact(alive, cut) == (cut,) and cached.rows.numel() == 8
    # take cuts a batch tensor to the held rows; spread puts a step's output back, zeros at the rows not held
    assert cached.take(torch.arange(32)).tolist() == list(range(20, 28))
    spread = cached.spread(torch.ones(8, 3))
    assert spread.shape == (32, 3) and spread[20:28].eq(1).all() and spread[:20].eq(0).all() and spread[28:].eq(0).all()
    half_alive = torch.arange(32) >= 16
    assert CacheRows(32, "cpu", enabled=False).compact(half_alive, cache) == (cache,)  # off: never cut


def test_only_long_budgets_compact():
    assert not long_budget(generation.LONG_BUDGET_TOKENS - 1) and long_budget(generation.LONG_BUDGET_TOKENS)


def test_an_hf_cache_keeps_the_selected_rows(long_files):
    lm = AutoModelForCausalLM.from_pretrained(long_files.policy).eval()
    ids = torch.randint(3, 64, (6, 5))
    with torch.no_grad():
        cache = lm(input_ids=ids, use_cache=True).past_key_values
        keys = cache.layers[0].keys.clone()
        select_cache_rows(cache, torch.tensor([1, 4]))
    assert torch.equal(cache.layers[0].keys, keys[[1, 4]])


def test_the_stop_rate_policy_ends_responses_at_the_rate_it_was_built_for():
    torch.manual_seed(0)
    lm = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=1, vocab_size=256, n_positions=64))
    raise_stop_logit(lm, eos_id=1, stop_rate=0.05)
    with torch.no_grad():
        probs = lm(input_ids=torch.randint(3, 256, (64, 32))).logits.softmax(-1)
    assert probs[..., 1].mean().item() == pytest.approx(0.05, rel=0.25)
    assert probs[..., 2:].max().item() < 0.05  # every other id stays near uniform


def test_compacted_sampling_draws_the_same_tokens_with_fewer_rows(long_files, monkeypatch):
    lm = AutoModelForCausalLM.from_pretrained(long_files.policy).eval()
    tokenizer = AutoTokenizer.from_pretrained(long_files.policy)
    queries, query_mask = left_pad([tokenizer(p, add_special_tokens=False)["input_ids"] for p in long_files.prompts[:64]],
                                   tokenizer.pad_token_id)
    kept = counting_selects(monkeypatch)
    draws = {}
    for compact in (False, True):
        draws[compact] = sample(lm, queries, query_mask, LONG.response_length, tokenizer.eos_token_id,
                                tokenizer.pad_token_id, generator=torch.Generator().manual_seed(0), compact=compact)
    full, compacted = draws[False], draws[True]
    assert torch.equal(full.tokens, compacted.tokens) and torch.equal(full.mask, compacted.mask)
    torch.testing.assert_close(full.logprobs, compacted.logprobs, rtol=0, atol=1e-5)
    assert len(kept) >= 2 and kept == sorted(kept, reverse=True) and kept[-1] >= generation.MIN_CACHED_ROWS
    lengths = full.mask.sum(1)
    assert lengths.float().mean() < LONG.response_length / 3 < lengths.max()  # most end early, a few run long


class Collected(BaseCallback):
    def _on_step(self) -> bool:
        return True


def long_ppo(files, max_new_tokens: int = LONG.response_length, **policy_kwargs) -> TokenPPO:
    env = RLHFVecEnv(num_envs=LONG.rollout_batch, task=None, ref_model=files.policy, reward_model=files.reward,
                     prompts=files.prompts, max_prompt_tokens=LONG.prompt_length, max_new_tokens=max_new_tokens,
                     beta=0.05)
    return TokenPPO("TransformerPolicy", env, seed=0, batch_size=8, device="cpu", policy_kwargs=policy_kwargs)


def test_ppo_runs_its_update_in_length_buckets_on_long_budgets_only(long_files):
    assert long_ppo(long_files).policy.max_length_buckets == LONG_BUDGET_BUCKETS
    assert long_ppo(long_files, max_new_tokens=generation.LONG_BUDGET_TOKENS - 1).policy.max_length_buckets == 1
    assert long_ppo(long_files, max_length_buckets=2).policy.max_length_buckets == 2  # the caller's choice stands


def one_rollout(files):
    model = long_ppo(files)
    model._setup_learn(LONG.rollout_batch, None)
    callback = Collected()
    callback.init_callback(model)
    assert model.collect_rollouts(model.env, callback, model.rollout_buffer, model.n_steps)
    return model.rollout_buffer


def test_a_compacted_rollout_is_the_full_batchs_rollout(long_files, monkeypatch):
    monkeypatch.setattr(generation, "LONG_BUDGET_TOKENS", 10**9)  # off
    full = one_rollout(long_files)
    monkeypatch.setattr(generation, "LONG_BUDGET_TOKENS", 64)
    kept = counting_selects(monkeypatch)
    compacted = one_rollout(long_files)
    assert kept, "the rollout never compacted its cache"
    assert torch.equal(full.responses, compacted.responses) and torch.equal(full.response_mask, compacted.response_mask)
    for name in ("logprobs", "values", "rewards", "advantages"):
        torch.testing.assert_close(getattr(full, name), getattr(compacted, name), rtol=0, atol=1e-5)


@pytest.mark.slow  # builds the long-128 workload's model and samples 4 rollouts of up to 128 tokens
def test_the_compaction_benchmark_samples_the_same_tokens_both_ways():
    from rlhf_gym.benchmarks.compaction import time_sampling

    result = time_sampling("long-128", rounds=2)  # raises if compaction changed a token
    assert result["full"] > 0 and result["compacted"] > 0
    assert result["mean_length"] < 64 and result["longest"] <= 128
