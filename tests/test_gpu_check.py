"""`rlhf-gym gpu-check`: its plan parses on any machine; without CUDA it refuses at once."""

import pytest
import torch

from rlhf_gym.agents import train
from rlhf_gym.benchmarks import command as benchmark
from rlhf_gym.benchmarks import gpu_check
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.errors import ConfigError


def test_plan_prints_both_steps_and_their_options_parse(tmp_path, capsys):
    plan = gpu_check.main(gpu_check.Args(out_dir=str(tmp_path), plan=True))
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("rlhf-gym train --device cuda --amp bf16") and printed[0].endswith("--no-progress-bar")
    assert printed[1].startswith("rlhf-gym benchmark --configs gpt2 --systems ours,trl --device cuda --amp bf16")
    assert "--no-sweep" in printed[1] and "--peak-tflops" not in printed[1]  # None: by the device's name
    # each printed command line is what the step runs: the commands' own parsers accept it and give the plan's values
    for line, (name, module) in zip(printed, (("train", train), ("benchmark", benchmark))):
        parsed = parse_dataclass(module.Args, "", line.split()[2:])
        assert {k: getattr(parsed, k) for k in plan[name]} == {k: v for k, v in plan[name].items()}


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_refuses_without_cuda(tmp_path):
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        gpu_check.main(gpu_check.Args(out_dir=str(tmp_path)))
    assert not (tmp_path / "train").exists()


def test_summary_lines():
    rows = [{"system": s, "seconds_per_iteration": t, "update_mfu": m, "cuda_max_memory_allocated_mb": 2048.0}
            for s, t, m in (("ours", 2.0, 0.31), ("trl", 5.0, None))]
    lines = gpu_check.summary_lines({"gold_reward": 1.2345, "kl": 4.0, "well_formed": 0.99}, 61.2, rows)
    assert lines == ["default job (bf16, CUDA): gold 1.234, KL 4.00, well-formed 0.990, 61 s",
                     "gpt2 ours: 2.00 s per PPO iteration, update MFU 31.0 %, CUDA peak 2,048 MB",
                     "gpt2 trl: 5.00 s per PPO iteration, update MFU n/a, CUDA peak 2,048 MB",
                     "gpt2: ours is 2.50x TRL's PPOTrainer"]
