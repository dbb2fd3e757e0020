"""Data-parallel training on Accelerate (rlhf_gym.agents.parallel): the reductions by hand, the engines refused, one
update on two
processes against one process over the same global batch, and ``train_agent.py`` under ``accelerate launch``.

Two CPU processes talk over gloo: ``ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2`` (the
``--cpu`` launcher alone starts one process unless MPI is installed).
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2LMHeadModel, pipeline

import data_parallel_worker as worker
from rlhf_gym.agents import DPO, TokenPPO, train
from rlhf_gym.agents.buffer import masked_whiten
from rlhf_gym.agents.dpo import dpo_loss, sequence_logps
from rlhf_gym.agents.parallel import DataParallel, ProcessGroupKLController
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.errors import ConfigError
from rlhf_gym.gpt2 import gpt2_config
from rlhf_gym.jsonl import read_jsonl, write_jsonl
from rlhf_gym.kl import AdaptiveKLController

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
          "--mixed_precision", "no", "--dynamo_backend", "no"]
UPDATE_TOLERANCE = 1e-6
"""Parameters after one update on 2 processes and on 1 differ by float32 summation order only (measured: at most
1.2e-7 over PPO, RLOO, GRPO and DPO); the same update with a per-process token normaliser instead of the global one
differs by 3.8e-3, so 1e-6 separates the two by three orders of magnitude either way."""


def launch(*argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*LAUNCH, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


class TwoIdenticalProcesses(DataParallel):
    """What process 0 of two sees when the other process holds exactly the same numbers: every sum doubles."""

    def __init__(self):
        super().__init__(SimpleNamespace(num_processes=2, process_index=0, device=torch.device("cpu")))

    def sum(self, tensor):
        return 2 * tensor


# ------------------------------------------------------------------------------------------ by hand
def test_a_single_process_reduces_nothing():
    parallel = DataParallel()
    x = torch.tensor([1.0, 2.0, 4.0])
    assert parallel.sum(x) is x and parallel.gather(x) is x and torch.equal(parallel.own_part(x), x)
    assert parallel.mean([1.0, 2.0, 6.0]) == 3.0
    assert parallel.num_processes == 1 and parallel.is_main_process and parallel.process_seed(7) == 7
    assert parallel.share(64, "--n-envs") == 64
    module, optimizer = torch.nn.Linear(2, 2), object()
    assert parallel.prepare(module, optimizer) == (module, optimizer)


def test_shares_must_split_evenly_over_the_processes():
    parallel = TwoIdenticalProcesses()
    assert parallel.share(64, "--n-envs") == 32
    with pytest.raises(ConfigError, match="--batch-size 15 does not split over 2 processes"):
        parallel.share(15, "--batch-size")
    assert parallel.process_seed(3) == 3  # process 0 samples with the run's seed, the others apart from it
    assert DataParallel(SimpleNamespace(num_processes=2, process_index=1)).process_seed(3) == 3 + 1_000_003


def test_whitening_over_processes_uses_every_process_s_tokens():
    x = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    alone = masked_whiten(x, mask)
    # by hand: mean 2, variance 2/3 over the three tokens
    expected = torch.tensor([[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]) / (2 / 3 + 1e-8) ** 0.5
    torch.testing.assert_close(alone, expected)
    # two processes holding the same tokens: the same mean and variance (the two-process test covers different ones)
    torch.testing.assert_close(masked_whiten(x, mask, total=TwoIdenticalProcesses().sum), alone)


def test_kl_controller_updates_once_per_rollout_with_the_kl_of_all_processes():
    inner = AdaptiveKLController(beta=0.1, target=1.0, horizon=100)
    controller = ProcessGroupKLController(inner, TwoIdenticalProcesses())
    controller.update(3.0, 2)  # the env's updates during a rollout are held...
    controller.update(0.0, 2)
    assert controller.beta == 0.1
    controller.synchronise()  # ...then applied as one: mean KL (3*2 + 0*2) / 4 = 1.5 over 2 x 4 = 8 responses
    error = min(1.5 / 1.0 - 1, 0.2)
    assert controller.beta == pytest.approx(0.1 * (1 + error * 8 / 100))
    controller.synchronise()  # nothing held: no update
    assert controller.beta == pytest.approx(0.1 * (1 + error * 8 / 100))
    controller.load_state_dict({"beta": 0.5})
    assert controller.state_dict()["beta"] == inner.beta == 0.5


def test_dpo_refuses_a_minibatch_smaller_than_the_processes(task, ref_model, tokenizer):
    """5 comparisons in minibatches of 2 end each epoch with a minibatch of 1, which 2 processes cannot share."""
    dpo = DPO(ref_model, ref_model, tokenizer, task.reward_model_comparisons()[:5], batch_size=2, device="cpu")
    dpo.parallel = TwoIdenticalProcesses()
    with pytest.raises(ConfigError, match="leaves a minibatch of 1: fewer comparisons than the 2 processes"):
        dpo.learn(5)
    assert dpo.num_steps == 0


def process_of_two(index: int) -> DataParallel:
    """Process ``index`` of two, with DDP's calls done locally (no process group): its own gradients, torch's clip."""
    return DataParallel(SimpleNamespace(num_processes=2, process_index=index, device=torch.device("cpu"),
                                        backward=lambda loss: loss.backward(),
                                        clip_grad_norm_=torch.nn.utils.clip_grad_norm_))


@pytest.mark.parametrize(("index", "rows"), [(0, [3, 2]), (1, [0, 1])])
def test_dpo_loss_on_a_process_is_its_share_of_the_global_mean(task, tokenizer, index, rows):
    """Of the minibatch [3, 0, 2, 1] process 0 of 2 takes positions 0 and 2 (comparisons 3 and 2), process 1 positions
    1 and 3 (comparisons 0 and 1); each divides the sum of its 2 losses by 4 / 2 = 2 (the minibatch over the
    processes), not by the minibatch's 4 (a gradient half the global mean's once DDP averages it)."""
    torch.manual_seed(0)
    policy = GPT2LMHeadModel(gpt2_config(tokenizer, 16, 1, heads=2))
    torch.manual_seed(1)
    reference = GPT2LMHeadModel(gpt2_config(tokenizer, 16, 1, heads=2))  # not the policy: the rows' losses differ
    dpo = DPO(policy, reference, tokenizer, task.reward_model_comparisons()[:4], beta=0.5, learning_rate=1e-2,
              batch_size=4, device="cpu")
    with torch.no_grad():  # every comparison's loss, from the same single-process code the step uses
        logps = sequence_logps(dpo.policy, *dpo._batch([0, 1, 2, 3])).view(2, -1)
        losses, _, _ = dpo_loss(logps[0], logps[1], dpo.ref_logps[:, 0], dpo.ref_logps[:, 1], beta=0.5)
    losses = losses.tolist()
    assert abs((losses[3] + losses[2]) - (losses[0] + losses[1])) > 1e-3  # the two shares differ
    dpo.parallel = process_of_two(index)
    stats = dpo.train_step([3, 0, 2, 1])
    expected = (losses[rows[0]] + losses[rows[1]]) / (4 / 2)
    assert stats["train/loss"] == pytest.approx(expected, abs=1e-5)
    assert (dpo.num_comparisons, dpo.num_steps) == (4, 1)  # the whole minibatch is counted, on every process


class TenMoreTokensElsewhere(TwoIdenticalProcesses):
    """Process 0 of two when the other process's share holds 10 response tokens in all."""

    def sum(self, tensor):
        return tensor + 10


def test_ppo_token_normaliser_is_the_global_token_count_over_the_processes():
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])  # 5 tokens here
    normaliser = TokenPPO.minibatch_tokens  # only reads self.parallel
    assert normaliser(SimpleNamespace(parallel=DataParallel()), mask).item() == 5.0  # one process: its own count
    # two processes with 5 tokens each: (5 + 5) / 2 = 5, the local count
    assert normaliser(SimpleNamespace(parallel=TwoIdenticalProcesses()), mask).item() == 5.0
    # the other process holds 10: (5 + 10) / 2 = 7.5, neither the local 5 nor the global 15
    assert normaliser(SimpleNamespace(parallel=TenMoreTokensElsewhere()), mask).item() == 7.5

@pytest.mark.parametrize("flag", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_sharding_engines_are_refused_with_the_reason(monkeypatch, flag):
    monkeypatch.setenv(flag, "true")
    with pytest.raises(ConfigError, match="does not support yet"):
        DataParallel.from_launch()


def test_a_launch_that_accelerate_does_not_join_is_refused(monkeypatch):
    """Several processes launched, but Accelerate set up one (on CPU without ACCELERATE_USE_CPU): each would train alone."""
    import accelerate

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(accelerate, "Accelerator", lambda: SimpleNamespace(num_processes=1, distributed_type="NO"))
    with pytest.raises(ConfigError, match="ACCELERATE_USE_CPU=true accelerate launch --multi_gpu"):
        DataParallel.from_launch()
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not DataParallel.from_launch().distributed


# -------------------------------------------------------------------------------------- two processes
def test_a_run_leaves_its_process_group_when_it_ends(tmp_path, monkeypatch):
    # a gloo process that exits with its group still up can abort in the interpreter's teardown after its work is done
    # (SIGABRT: "terminate called without an active exception"), which failed the launch test once on 2 busy cores
    ended = []
    DataParallel(SimpleNamespace(end_training=lambda: ended.append(True))).close()
    DataParallel().close()  # one process: no group to leave
    assert ended == [True]
    closed = []
    monkeypatch.setattr(DataParallel, "close", lambda self: closed.append(self.process_index))
    train.main(parse_dataclass(train.Args, "", ["--out-dir", str(tmp_path), "--total-responses", "8", "--n-envs", "8",
                                                "--batch-size", "4", "--max-new-tokens", "6", "--n-eval-prompts", "4",
                                                "--no-progress-bar"]))
    assert closed == [0]


@pytest.mark.slow
def test_one_update_on_two_processes_equals_one_process_on_the_global_batch(tmp_path):
    single = worker.updated_parameters(DataParallel())
    launch("tests/data_parallel_worker.py", str(tmp_path / "two.pt"))
    two = torch.load(tmp_path / "two.pt")
    assert two["processes"] == 2
    reference = dict(worker.load_task("reviews").load_policy().named_parameters())
    for algo in ("ppo", "rloo", "grpo", "dpo"):
        for name, value in single[algo].items():
            torch.testing.assert_close(two["parameters"][algo][name], value, atol=UPDATE_TOLERANCE, rtol=0,
                                       msg=lambda m, algo=algo, name=name: f"{algo}, {name}: {m}")
        moved = max((value - reference[name.removeprefix("lm.")]).abs().max().item()
                    for name, value in single[algo].items() if name.removeprefix("lm.") in reference)
        assert moved > 100 * UPDATE_TOLERANCE, f"{algo}: the update barely moved the weights ({moved})"


@pytest.mark.slow
def test_train_agent_under_accelerate_launch_writes_one_run_that_resumes(tmp_path):
    common = ["--n-envs", "16", "--batch-size", "8", "--n-eval-prompts", "16", "--checkpoint-every", "32",
              "--no-progress-bar"]
    launch("scripts/train_agent.py", "--total-responses", "64", "--kl-target", "1.0", "--out-dir", str(tmp_path), *common)
    (run,) = list(tmp_path.iterdir())  # one run directory, written by the main process
    assert json.loads((run / "args.json").read_text())["processes"] == 2
    curve = list(read_jsonl(run / "curve.jsonl"))
    assert [row["responses"] for row in curve] == [16, 32, 48, 64]  # 8 responses per process per rollout
    assert len({row["beta"] for row in curve}) > 1  # the adaptive controller moved beta
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["iterations"], summary["responses"]) == (4, 64)

    exported = AutoModelForCausalLM.from_pretrained(run / "policy")  # a plain HF model
    assert not any(name.startswith("module.") for name, _ in exported.named_parameters())
    text = pipeline("text-generation", model=str(run / "policy"))("the soup", max_new_tokens=4, do_sample=False)
    assert text[0]["generated_text"].startswith("the soup")
    agent = TokenPPO.load(run / "checkpoints" / "agent_00000032_responses.zip", device="cpu")
    assert (agent.n_rollouts, agent.num_responses) == (2, 32)

    launch("scripts/train_agent.py", "--resume", str(run / "checkpoints" / "agent_00000032_responses.zip"),
           "--total-responses", "96", "--overwrite", "--no-progress-bar")
    assert list(tmp_path.iterdir()) == [run]
    assert [row["responses"] for row in read_jsonl(run / "curve.jsonl")] == [16, 32, 48, 64, 80, 96]
    assert json.loads((run / "summary.json").read_text())["responses"] == 96


@pytest.mark.slow
def test_grpo_with_lora_under_accelerate_launch(tmp_path):
    launch("scripts/train_agent.py", "--algo", "grpo", "--lora-r", "4", "--n-envs", "16", "--batch-size", "8",
           "--total-responses", "64", "--n-eval-prompts", "16", "--no-progress-bar", "--out-dir", str(tmp_path))
    (run,) = list(tmp_path.iterdir())
    assert json.loads((run / "summary.json").read_text())["responses"] == 64
    assert not (run / "policy" / "adapter_config.json").exists()  # the adapters are merged into a plain model
    AutoModelForCausalLM.from_pretrained(run / "policy")


@pytest.mark.slow
def test_dpo_under_accelerate_launch(tmp_path, task):
    comparisons = tmp_path / "comparisons.jsonl"
    write_jsonl(comparisons, task.reward_model_comparisons()[:64])
    launch("scripts/train_agent.py", "--algo", "dpo", "--comparisons", str(comparisons), "--batch-size", "16",
           "--n-eval-prompts", "16", "--no-progress-bar", "--out-dir", str(tmp_path / "runs"))
    (run,) = list((tmp_path / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["steps"], summary["comparisons"]) == (4, 64)
    assert (run / "policy" / "config.json").is_file()


@pytest.mark.parametrize("name", ["ddp.yaml", "ddp_multinode.yaml"])
def test_the_shipped_accelerate_configs_load_as_multi_gpu_ddp(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(ROOT / "configs" / "accelerate" / name))
    assert config.distributed_type.value == "MULTI_GPU" and config.mixed_precision == "no"
    assert config.num_processes % config.num_machines == 0
