"""A run's inputs by content (agents.run_inputs): hashes that notice a changed byte or name, and a resume check that
names what changed."""

import pytest

from rlhf_gym.agents.experiment import TrainConfig
from rlhf_gym.agents.run_inputs import check_unchanged_inputs, content_hash, describe_input, run_inputs
from rlhf_gym.errors import ConfigError


def test_a_directory_hash_follows_its_files_bytes_and_names(tmp_path):
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "weights.bin").write_bytes(b"\x00\x01")
    first = content_hash(model)
    assert content_hash(model) == first and len(first) == 64
    (model / "sub" / "weights.bin").write_bytes(b"\x00\x02")
    changed = content_hash(model)
    assert changed != first
    (model / "sub" / "weights.bin").rename(model / "sub" / "other.bin")
    assert content_hash(model) not in (first, changed)  # same bytes under another name: another model
    assert describe_input("gpt2-no-such-local-dir") == "hub:gpt2-no-such-local-dir"


def test_a_run_records_what_it_reads(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the soup was\n")
    inputs = run_inputs(TrainConfig(prompts=str(prompts)))
    assert inputs["prompts"] == content_hash(prompts) and set(inputs) == {"prompts", "task:reviews"}
    ensemble = run_inputs(TrainConfig(env_id="RLHF-Reviews-Ensemble-v0"))  # the reward model the env id fixes
    assert not ensemble["reward_model"].startswith(("hub:", "object:"))


def test_a_resume_check_names_every_changed_input(tmp_path):
    stored = {"prompts": "a", "task:reviews": "b"}
    assert check_unchanged_inputs(stored, dict(stored), tmp_path / "args.json") is None
    with pytest.raises(ConfigError, match=r"changed since it started \(--prompts, --reward-model, task:reviews\)"):
        check_unchanged_inputs(stored, {"prompts": "c", "reward_model": "d", "task:reviews": "e"}, tmp_path / "args.json")
    assert "not checked" in check_unchanged_inputs(None, stored, tmp_path / "args.json")
