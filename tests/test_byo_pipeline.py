"""The bring-your-own-model path end to end, each stage a subprocess on tiny sizes (docs/byo_model.md).

A Llama on a byte-level BPE tokenizer, both built here from the lists task's text (no hub): ``make-model`` ->
``export-data`` -> ``sft`` on the demonstrations -> ``train-rm`` with its own tokenizer -> PPO, GRPO and DPO on
``RLHF-Lists-v0`` -> ``evaluate --model --suite``.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

pytestmark = pytest.mark.slow

VOCABULARY = 512


def rlhf_gym(*argv) -> str:
    """Run ``rlhf-gym argv`` in a subprocess (one thread); its stdout, after asserting it succeeded."""
    done = subprocess.run([sys.executable, "-m", "rlhf_gym", *map(str, argv)], capture_output=True, text=True,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def run_dir(parent: Path) -> Path:
    (only,) = [p for p in parent.iterdir() if p.is_dir()]
    return only


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("byo_pipeline")


@pytest.fixture(scope="module")
def base_model(work) -> Path:
    rlhf_gym("make-model", "--task", "lists", "--out-dir", work / "llama", "--vocab-size", VOCABULARY, "--n-texts", 3000,
             "--width", 64, "--layers", 2)
    return work / "llama"


@pytest.fixture(scope="module")
def exported(work) -> Path:
    rlhf_gym("export-data", "--task", "lists", "--out-dir", work / "data", "--n-demonstrations", 20000)
    return work / "data"


@pytest.fixture(scope="module")
def sft_run(work, base_model, exported) -> Path:
    rlhf_gym("sft", "--model", base_model, "--data", exported / "sft.jsonl", "--task", "lists", "--epochs", 1,
             "--learning-rate", 3e-3, "--batch-size", 32, "--n-eval-prompts", 128, "--out-dir", work / "sft",
             "--no-progress-bar")
    return run_dir(work / "sft")


@pytest.fixture(scope="module")
def reward_model(work, sft_run, exported) -> Path:
    # 2,000 of the task's comparisons, read by the SFT model's own tokenizer
    lines = (exported / "preferences.jsonl").read_text().splitlines()[:2000]
    (work / "comparisons.jsonl").write_text("\n".join(lines) + "\n")
    rlhf_gym("train-rm", "--model", sft_run / "policy", "--data", work / "comparisons.jsonl", "--out-dir", work / "rm",
             "--epochs", 1)
    return work / "rm"


def test_sft_lifts_the_gold_reward_of_the_bpe_llama(sft_run):
    summary = json.loads((sft_run / "summary.json").read_text())
    before, after = summary["gold"]["before"], summary["gold"]["after"]
    assert before["well_formed_share"] < 0.05 and before["gold_reward_mean"] < -1.5  # random weights: byte soup
    assert after["gold_reward_mean"] > before["gold_reward_mean"] + 1.0
    assert after["well_formed_share"] > 0.3
    tokenizer = AutoTokenizer.from_pretrained(sft_run / "policy")
    assert len(tokenizer) == VOCABULARY and tokenizer.chat_template is not None


def test_reward_model_reads_with_its_own_tokenizer(reward_model):
    model = AutoModelForSequenceClassification.from_pretrained(reward_model)
    assert type(model).__name__ == "LlamaForSequenceClassification" and model.config.num_labels == 1
    assert len(AutoTokenizer.from_pretrained(reward_model)) == VOCABULARY
    metadata = json.loads((reward_model / "reward_metadata.json").read_text())
    assert metadata["eval_accuracy"] > 0.5


@pytest.mark.parametrize("algo", ["ppo", "grpo", "dpo"])
def test_algorithms_train_the_bpe_llama(algo, work, sft_run, reward_model, exported):
    out = work / f"runs_{algo}"
    budget = (["--comparisons", work / "comparisons.jsonl", "--total-comparisons", 256] if algo == "dpo"
              else ["--reward-model", reward_model, "--total-responses", 256, "--n-envs", 64])
    rlhf_gym("train", "--algo", algo, "--env-id", "RLHF-Lists-v0", "--model", sft_run / "policy", "--ref-model",
             sft_run / "policy", *budget, "--n-eval-prompts", 32, "--out-dir", out, "--no-progress-bar")
    run = run_dir(out)
    after = json.loads((run / "summary.json").read_text())["after"]
    assert after["kl"] > 0  # the policy moved away from the SFT model, KL in the policy's own tokens
    trained = AutoModelForCausalLM.from_pretrained(run / "policy")
    assert type(trained).__name__ == "LlamaForCausalLM"
    assert AutoTokenizer.from_pretrained(run / "policy").get_vocab() == AutoTokenizer.from_pretrained(
        sft_run / "policy").get_vocab()


def test_evaluate_the_bpe_llama_on_the_suite(work, base_model, sft_run):
    rlhf_gym("evaluate", "--model", sft_run / "policy", "--suite", "RLHF-Suite-v0", "--n-eval-prompts", 32,
             "--out", work / "suite.json")
    rows = {row["env_id"]: row for row in json.loads((work / "suite.json").read_text())["rows"]}
    assert list(rows) == ["RLHF-v0", "RLHF-Lists-v0", "RLHF-Facts-v0", "RLHF-Describe-v0"]
    assert all(row["metrics"]["kl"] is None for row in rows.values())  # no --reference: gold and proxy only
    rlhf_gym("evaluate", "--model", base_model, "--env-id", "RLHF-Lists-v0", "--n-eval-prompts", 32,
             "--out", work / "untrained.json")
    untrained = json.loads((work / "untrained.json").read_text())["metrics"]
    assert rows["RLHF-Lists-v0"]["metrics"]["gold_reward"] > untrained["gold_reward"] + 1.0
