"""scripts/benchmark.py --quick: the report's structure, for ours alone and (when installed) beside TRL, for PPO and for
the new trainers (RLOO, GRPO, DPO); the report's pairing of each algorithm's systems."""

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_gym.agents.experiment import TrainConfig
from rlhf_gym.benchmarks.command import Args
from rlhf_gym.benchmarks.dpo import comparisons
from rlhf_gym.benchmarks.report import check_targets, our_system, ours_vs_trl
from rlhf_gym.benchmarks.workloads import WORKLOADS, ModelFiles, build_models
from rlhf_gym.reward_model import RewardModel
from rlhf_gym.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]
QUICK_STEPS = 2 * 2  # the quick workload: 2 minibatches x 2 epochs
QUICK_RESPONSE = 8
QUICK_BATCH, QUICK_SEQUENCE = 8, 4 + 8  # rollout batch (comparisons for DPO); prompt + response tokens
NEW_TRAINERS = ("rloo", "grpo", "dpo")
REVIEWS = WORKLOADS["reviews"]


def run_benchmark(out_dir: Path, *options: str) -> tuple[dict, str]:
    command = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--out-dir", str(out_dir), *options]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out_dir / "benchmark.json").read_text()), (out_dir / "benchmark.md").read_text()


def run_quick(out_dir: Path, *options: str) -> tuple[dict, str]:
    return run_benchmark(out_dir, "--quick", *options)


def check_result(result: dict, timed_phases: tuple[str, ...] = ("sampling", "scoring", "update")) -> None:
    assert result["seconds_per_iteration"] > 0 and result["response_tokens_per_second"] > 0
    assert set(result["phases"]) == {"sampling", "scoring", "update", "other"}
    assert all(result["phases"][phase] > 0 for phase in timed_phases)
    assert all(result["phases"][phase] == 0 for phase in {"sampling", "scoring", "update"} - set(timed_phases))
    assert result["optimizer_steps_per_iteration"] == QUICK_STEPS
    assert result["mean_response_length"] == QUICK_RESPONSE  # the stop token never occurs: full-length responses
    assert result["peak_rss_mb"] >= result["rss_after_imports_mb"] > 0
    assert result["trainable_parameters"] > 0 and result["update_tflops_per_second"] > 0
    assert result["timed_iterations"] == 1 and len(result["iterations"]) == 2  # one warm-up, one timed


@pytest.mark.slow  # a subprocess benchmark run
def test_quick_benchmark_of_ours_writes_json_and_markdown(tmp_path):
    report, table = run_quick(tmp_path, "--systems", "ours")
    assert {"date", "command", "machine", "args", "results", "sweep", "targets", "growth_exponents"} <= set(report)
    assert report["machine"]["cpu_cores"] > 0 and report["precision"] == "float32"
    [result] = report["results"]
    assert (result["config"], result["system"]) == ("quick", "ours")
    check_result(result)
    points = {(row["response_length"], row["rollout_batch"]) for row in report["sweep"]}
    assert points == {(4, 8), (8, 8), (8, 4)}
    for row in report["sweep"]:
        assert row["seconds_per_iteration"] > 0 and row["response_tokens_per_second"] > 0
        assert row["optimizer_steps_per_iteration"] == QUICK_STEPS
    assert all(isinstance(value, float) for value in report["growth_exponents"].values())
    assert "| ours |" in table and "Scaling of ours" in table


@pytest.mark.slow  # a subprocess benchmark run
def test_quick_benchmark_counts_the_same_work_for_trl(tmp_path):
    pytest.importorskip("trl")
    report, table = run_quick(tmp_path, "--systems", "ours,trl", "--no-sweep")
    results = {r["system"]: r for r in report["results"]}
    assert set(results) == {"ours", "trl"}
    for result in results.values():
        check_result(result)
    assert report["sweep"] == [] and "| trl |" in table


@pytest.mark.slow  # a subprocess benchmark run
def test_quick_benchmark_holds_less_memory_than_trl_with_and_without_lora(tmp_path):
    pytest.importorskip("trl")
    pytest.importorskip("peft")
    report, table = run_quick(tmp_path, "--systems", "ours,ours-lora,trl,trl-lora", "--no-sweep")
    results = {r["system"]: r for r in report["results"]}
    for result in results.values():
        check_result(result)
    weights = {system: r["weights_mb"] for system, r in results.items()}
    state = {system: r["training_state_mb"] for system, r in results.items()}
    # ours holds policy, reference and reward model; TRL also a value model: three copies of the trunk against four
    assert weights["ours"] / weights["trl"] == pytest.approx(3 / 4, abs=0.05)
    # with LoRA the reference is the policy's base, adapters off: one copy of the trunk fewer on both sides (plus the
    # adapters, which are large next to this tiny model)
    assert weights["ours-lora"] < weights["ours"] and weights["trl-lora"] < weights["trl"]
    assert weights["ours-lora"] < weights["trl-lora"]
    # AdamW's two moments and a gradient per trained parameter: ours trains one transformer, TRL two
    assert state["ours"] / state["trl"] == pytest.approx(1 / 2, abs=0.05)
    assert state["ours-lora"] < state["trl-lora"] / 2 and state["ours-lora"] < state["ours"] / 2
    assert "| quick | PPO, LoRA | ours-lora | trl-lora |" in table and "training state MB" in table


def test_a_long_workload_ends_at_eos_and_can_change_its_budget():
    long = WORKLOADS["long-128"]
    assert long.ends_at_eos and not WORKLOADS["small"].ends_at_eos and WORKLOADS["reviews"].ends_at_eos
    assert "ending at EOS with chance 0.025 per token" in long.describe()
    assert Args(configs="long-128", response_length=200).response_length == 200


def check_new_trainer(result: dict) -> None:
    """The matched work of ``ours-X`` / ``trl-X``: optimizer steps, full-length responses, responses and update tokens
    per iteration (DPO: chosen and rejected of every comparison), and the phases each one has."""
    dpo = result["system"].endswith("-dpo")
    check_result(result, ("update",) if dpo else ("sampling", "scoring", "update"))
    copies = 2 if dpo else 1
    assert result["responses_per_iteration"] == copies * QUICK_BATCH
    assert result["response_tokens_per_second"] == pytest.approx(
        copies * QUICK_BATCH * QUICK_RESPONSE / result["seconds_per_iteration"])
    assert result["update_tokens_per_iteration"] == copies * 2 * QUICK_BATCH * QUICK_SEQUENCE  # 2 epochs


@pytest.mark.slow  # a subprocess benchmark run
def test_quick_benchmark_of_our_new_trainers(tmp_path):
    report, table = run_quick(tmp_path, "--systems", ",".join(f"ours-{algo}" for algo in NEW_TRAINERS), "--no-sweep")
    results = {r["system"]: r for r in report["results"]}
    assert set(results) == {f"ours-{algo}" for algo in NEW_TRAINERS}
    for result in results.values():
        check_new_trainer(result)
    assert report["ours_vs_trl"] == [] and "| ours-grpo |" in table and "Ours vs TRL" not in table


@pytest.mark.slow  # a subprocess benchmark run
def test_quick_benchmark_compares_each_new_trainer_with_trl(tmp_path):
    pytest.importorskip("trl")
    systems = [f"{side}-{algo}" for algo in NEW_TRAINERS for side in ("ours", "trl")]
    report, table = run_quick(tmp_path, "--systems", ",".join(systems), "--no-sweep")
    results = {r["system"]: r for r in report["results"]}
    assert set(results) == set(systems)
    for result in results.values():
        check_new_trainer(result)
    for algo in NEW_TRAINERS:  # the same model trains on both sides
        assert results[f"ours-{algo}"]["trainable_parameters"] == results[f"trl-{algo}"]["trainable_parameters"]
    for algo in ("rloo", "grpo"):  # TRL generates once per iteration, and reuses the batch for every optimizer step
        assert [it["generation_batches"] for it in results[f"trl-{algo}"]["iterations"]] == [1, 1]
    rows = {row["algorithm"]: row for row in report["ours_vs_trl"]}
    assert set(rows) == {"RLOO", "GRPO", "DPO"}
    for algo in NEW_TRAINERS:
        ours, trl = results[f"ours-{algo}"], results[f"trl-{algo}"]
        assert rows[algo.upper()]["speedup"] == pytest.approx(
            ours["response_tokens_per_second"] / trl["response_tokens_per_second"])
        assert f"| quick | {algo.upper()} | ours-{algo} | trl-{algo} |" in table


def test_each_algorithm_is_compared_with_its_own_system_of_ours():
    def result(config: str, system: str, tokens_per_second: float) -> dict:
        return {"config": config, "system": system, "seconds_per_iteration": 1.0,
                "response_tokens_per_second": tokens_per_second, "workload": dataclasses.asdict(WORKLOADS[config])}

    results = [result("small", "ours", 600.0), result("small", "trl", 200.0), result("small", "ours-dpo", 300.0),
               result("small", "trl-dpo", 200.0), result("small", "trl-grpo", 100.0), result("medium", "ours-rloo", 50.0),
               result("medium", "trl-rloo", 10.0)]
    assert [our_system(s) for s in ("trl", "sb3-per-token", "trl-lora", "trl-rloo", "ours-grpo", "trl-dpo")] == [
        "ours", "ours", "ours-lora", "ours-rloo", "ours-grpo", "ours-dpo"]
    rows = {(row["config"], row["algorithm"]): row["speedup"] for row in ours_vs_trl(results)}
    assert rows == {("small", "PPO"): 3.0, ("small", "DPO"): 1.5, ("medium", "RLOO"): 5.0}  # GRPO: no ours-grpo ran
    checks = {(c["config"], c["baseline"]): (c["measured"], c["met"]) for c in check_targets(results)}
    assert checks == {("small", "trl"): (3.0, True), ("small", "trl-dpo"): (1.5, False),
                      ("medium", "trl-rloo"): (5.0, True)}


def test_dpo_comparisons_have_the_workload_shape():
    workload = WORKLOADS["quick"]
    files = ModelFiles("policy", "reward", [f"prompt {i}" for i in range(20)])
    records = comparisons(workload, files, seed=0)
    assert [r["prompt"] for r in records] == files.prompts[:workload.rollout_batch]
    for record in records:
        for key in ("chosen", "rejected"):  # the EOS appended on both sides makes response_length tokens
            words = record[key].split()
            assert len(words) == workload.response_length - 1
            assert all(3 <= int(word[1:]) < workload.vocab_size for word in words)
    assert records == comparisons(workload, files, seed=0) != comparisons(workload, files, seed=1)


def test_the_new_trainers_refuse_a_task_workload():
    task_workload = next(name for name, workload in WORKLOADS.items() if workload.task is not None)
    with pytest.raises(ValueError, match="synthetic workloads only"):
        Args(configs=f"small,{task_workload}", systems="ours,trl-grpo")
    assert Args(configs="small", systems="ours-grpo,trl-grpo").systems == "ours-grpo,trl-grpo"


def test_reviews_workload_is_the_default_task_in_the_train_commands_shape(tmp_path):
    task, train = load_task("reviews"), TrainConfig()
    ppo = train.algorithm_config()
    assert (REVIEWS.rollout_batch, REVIEWS.rollout_batch // REVIEWS.minibatches, REVIEWS.epochs) == (
        train.n_envs, ppo.batch_size, ppo.n_epochs)
    assert REVIEWS.response_length == task.max_new_tokens
    files = build_models(REVIEWS, tmp_path, seed=0)
    assert (files.policy, files.reward, files.prompts) == (str(task.policy_dir), str(task.reward_dir), task.train_prompts)
    assert not any(tmp_path.iterdir())  # nothing is built


def test_trl_scores_the_reviews_task_as_our_env_does(monkeypatch):
    """TRL's get_reward on [query; response without its EOS] (rlhf_gym.benchmarks.trl.without_stop_token) gives our
    RewardModel's scores of the decoded text; reading the score at the EOS itself, as TRL does, would not."""
    pytest.importorskip("trl")
    monkeypatch.setenv("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo.ppo_trainer import truncate_response
    from trl.experimental.utils import get_reward

    from rlhf_gym.benchmarks.trl import without_stop_token

    task = load_task("reviews")
    tokenizer = AutoTokenizer.from_pretrained(task.policy_dir)
    prompts = task.train_prompts[:32]
    queries = torch.tensor([tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts])
    torch.manual_seed(0)
    generated = AutoModelForCausalLM.from_pretrained(task.policy_dir).generate(
        queries, attention_mask=torch.ones_like(queries), do_sample=True, max_new_tokens=REVIEWS.response_length,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    eos, pad, context = tokenizer.eos_token_id, tokenizer.pad_token_id, queries.shape[1]
    responses = truncate_response(eos, pad, generated[:, context:])
    assert (responses == eos).any(1).float().mean() > 0.5  # most responses end at EOS
    texts = [tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in responses.tolist()]  # the env's text
    ours = torch.from_numpy(RewardModel.from_pretrained(task.reward_dir).score(prompts, texts))
    reward_model = AutoModelForSequenceClassification.from_pretrained(task.reward_dir).eval()
    with torch.no_grad():
        query_responses = torch.cat([queries, responses], 1)
        _, adapted, _ = get_reward(reward_model, without_stop_token(query_responses, context, eos, pad), pad, context)
        _, at_eos, _ = get_reward(reward_model, query_responses, pad, context)
    torch.testing.assert_close(adapted, ours, rtol=0, atol=1e-5)
    assert not torch.allclose(at_eos, ours, atol=1e-3)


@pytest.mark.slow  # a subprocess benchmark run
def test_real_workload_ends_at_eos_and_the_fixed_length_run_uses_the_budget(tmp_path):
    systems = ["ours", "ours-fixed-length", *(["trl"] if importlib.util.find_spec("trl") else [])]
    report, table = run_benchmark(tmp_path, "--configs", "reviews", "--systems", ",".join(systems), "--iterations", "1",
                                  "--warmup", "0", "--threads", "1", "--no-sweep")
    results = {r["system"]: r for r in report["results"]}
    assert set(results) == set(systems)
    fixed = results["ours-fixed-length"]
    assert fixed["mean_response_length"] == REVIEWS.response_length
    assert fixed["update_tokens_per_iteration"] == REVIEWS.update_tokens
    for system in set(systems) - {"ours-fixed-length"}:
        result = results[system]
        assert result["optimizer_steps_per_iteration"] == REVIEWS.optimizer_steps
        assert 1 <= result["mean_response_length"] < REVIEWS.response_length  # the SFT policy ends at EOS
        assert result["response_tokens_per_second"] == pytest.approx(
            REVIEWS.rollout_batch * result["mean_response_length"] / result["seconds_per_iteration"])
        # each update forward covers at least the live tokens of its sequences, at most the full budget
        live = REVIEWS.epochs * REVIEWS.rollout_batch * (REVIEWS.prompt_length + result["mean_response_length"])
        assert live <= result["update_tokens_per_iteration"] <= REVIEWS.update_tokens
    # ours cuts each minibatch to its longest response: all 16 minibatches holding one of the full 24 tokens is unlikely
    assert results["ours"]["update_tokens_per_iteration"] < REVIEWS.update_tokens
    assert "| ours-fixed-length |" in table and "mean length" in table


def test_a_response_length_override_names_the_workload_and_is_checked():
    with pytest.raises(ValueError, match="task workload"):
        Args(configs="reviews", response_length=48)
    with pytest.raises(ValueError, match="128 positions"):
        Args(configs="small", response_length=200)
    assert Args(configs="small", response_length=96).response_length == 96


@pytest.mark.slow  # a subprocess
def test_the_profile_of_ours_names_its_phases_and_operators():
    out = subprocess.run([sys.executable, "-m", "rlhf_gym.benchmarks.profile", "--config", "quick", "--iterations", "1",
                          "--rows", "5"],
                         capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    first = out.splitlines()[0]
    assert first.startswith("quick, ") and all(f"{phase} " in first for phase in ("sampling", "scoring", "update"))
    assert "aten::" in out and "Self CPU" in out


def test_the_levers_benchmark_times_ours_rollout_and_the_bare_loop():
    from rlhf_gym.benchmarks.levers import rollout_loop

    result = rollout_loop(WORKLOADS["quick"], rollouts=1)
    assert set(result) == {"rollout_sampling", "bare_sampling"} and min(result.values()) > 0
