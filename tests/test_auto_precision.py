"""`--amp auto`: bf16 on CUDA, and on a CPU with bf16 units for models wide enough to gain (agents/precision.py)."""

import pytest
import torch
from transformers import GPT2Config

from rlhf_gym.agents import precision
from rlhf_gym.agents.experiment import TrainConfig


@pytest.fixture
def bf16_units(monkeypatch):
    """Set what torch reports about the CPU's bf16 units."""
    def set_units(amx: bool, avx512_bf16: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    return set_units


@pytest.mark.parametrize("amx, avx512_bf16", [(True, False), (False, True)])
def test_bf16_on_a_cpu_with_bf16_units_from_the_measured_width(bf16_units, amx, avx512_bf16):
    bf16_units(amx, avx512_bf16)
    assert precision.cpu_has_bf16_units()
    assert precision.auto_amp("cpu", precision.CPU_BF16_MIN_WIDTH) == "bf16" == precision.auto_amp("cpu", 768)
    assert precision.auto_amp("cpu", precision.CPU_BF16_MIN_WIDTH - 1) == "none"  # the default task's 128: slower in bf16
    assert precision.auto_amp("cpu", None) == "none"


def test_float32_on_a_cpu_without_bf16_units_and_bf16_on_cuda(bf16_units):
    bf16_units(False, False)
    assert not precision.cpu_has_bf16_units()
    assert precision.auto_amp("cpu", 1024) == "none"
    assert precision.auto_amp("cuda", 128) == "bf16" == precision.auto_amp("cuda", None)


def test_train_config_resolves_auto_from_the_policy_width(bf16_units):
    bf16_units(True, True)
    wide, narrow = (type("M", (), {"config": GPT2Config(n_embd=width)})() for width in (256, 128))
    cpu = torch.device("cpu")
    assert TrainConfig(amp="auto").amp_on(cpu, wide) == "bf16"
    assert TrainConfig(amp="auto").amp_on(cpu, narrow) is None  # float32
    assert TrainConfig(amp="none").amp_on(cpu, wide) is None
    assert TrainConfig(amp="bf16").amp_on(cpu, narrow) == "bf16"  # an explicit choice is kept
