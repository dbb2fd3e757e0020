"""The algorithm contract: a new trainer is one class, registered here alone, that ``rlhf-gym train`` trains, resumes
and ``rlhf-gym evaluate`` scores with no edit anywhere else; and the built-in algorithms declare consistent traits."""

import json
import zipfile
from dataclasses import fields

import pytest
import torch

from rlhf_gym.agents import evaluate, train
from rlhf_gym.agents.buffer import SequenceRolloutBuffer, SequenceSamples
from rlhf_gym.agents.critic_free import CriticFreeConfig, CriticFreeTokenPG, group_view
from rlhf_gym.agents.registry import ALGORITHMS, AlgorithmTraits, algorithm_of_checkpoint, get_algorithm, register_algorithm
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.errors import ConfigError, MissingFileError

TINY = ["--n-envs", "8", "--batch-size", "8", "--max-new-tokens", "6", "--n-eval-prompts", "8", "--no-progress-bar"]


class MeanBaselineReinforce(CriticFreeTokenPG):
    """REINFORCE with the group's mean reward as the baseline: a toy algorithm that exists in this file only."""

    traits = AlgorithmTraits("toy_reinforce", "REINFORCE with the group mean as baseline (a test's toy)", online=True,
                             group_sampling=True, kl="reward")
    Config = CriticFreeConfig
    algorithm_name = "toy REINFORCE"

    def sequence_rewards(self, rollout_buffer: SequenceRolloutBuffer, episodes: dict[int, dict]) -> torch.Tensor:
        return rollout_buffer.rewards.sum(1)

    def group_advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        groups = group_view(rewards, self.group_size)
        return (groups - groups.mean(1, keepdim=True)).reshape(-1)

    def policy_loss(self, batch: SequenceSamples, logprobs: torch.Tensor, clip_range: float):
        mask = batch.response_mask.float()
        loss = -(batch.advantages[:, 0] * (logprobs * mask).sum(1)).mean()
        return loss, {"policy_gradient_loss": loss.item()}


@pytest.fixture
def toy_algorithm():
    register_algorithm(MeanBaselineReinforce)
    yield MeanBaselineReinforce
    del ALGORITHMS[MeanBaselineReinforce.traits.name]


def run_train(argv):
    return train.main(parse_dataclass(train.Args, "", [str(a) for a in argv]))


@pytest.mark.slow
def test_a_toy_algorithm_registered_in_a_test_trains_resumes_and_evaluates(toy_algorithm, tmp_path):
    run_dir = run_train(["--algo", "toy_reinforce", "--group-size", 4, "--kl-coef", 0.05, "--total-responses", 16,
                         "--checkpoint-every", 8, "--out-dir", tmp_path, *TINY])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["iterations"], summary["responses"], summary["kl_coef"]) == (2, 16, 0.05)
    stored = json.loads((run_dir / "args.json").read_text())
    assert (stored["algo"], stored["env"]["group_size"], stored["env"]["beta"]) == ("toy_reinforce", 4, 0.05)
    assert stored["algorithm"]["n_epochs"] == 1  # the toy's Config supplied its defaults
    assert algorithm_of_checkpoint(run_dir / "agent.zip") is toy_algorithm  # the checkpoint names its algorithm

    (run_dir / "summary.json").unlink()  # as if the run had been killed after its first checkpoint
    checkpoint = run_dir / "checkpoints" / "agent_00000008_responses.zip"
    _, agent = train.build_env_and_agent(train.resumed_args(parse_dataclass(train.Args, "", ["--resume", str(checkpoint)])),
                                         resume=checkpoint)
    assert type(agent) is toy_algorithm and agent.n_rollouts == 1
    assert run_train(["--resume", checkpoint, "--no-progress-bar"]) == run_dir
    assert json.loads((run_dir / "summary.json").read_text())["iterations"] == 2

    result = evaluate.main(evaluate.Args(agent=str(run_dir / "agent.zip"), n_eval_prompts=8))
    assert result["n_prompts"] == 8 and result["metrics"]["kl"] >= 0


def test_an_unregistered_name_is_refused_with_the_choices(toy_algorithm):
    assert get_algorithm("toy_reinforce") is toy_algorithm
    with pytest.raises(ConfigError, match="--algo must be one of ppo, nlpo, rloo, grpo, dpo, ipo, cdpo, simpo, kto, "
                                          "online_dpo, toy_reinforce"):
        get_algorithm("toy")
    with pytest.raises(ValueError, match="already registered"):
        register_algorithm(type("Impostor", (MeanBaselineReinforce,), {}))


@pytest.mark.parametrize("name", ["ppo", "nlpo", "rloo", "grpo", "dpo", "ipo", "cdpo", "simpo", "kto", "online_dpo"])
def test_every_built_in_algorithm_declares_its_traits_config_and_defaults(name):
    cls = get_algorithm(name)
    traits, config = cls.traits, cls.Config()
    assert traits.name == name and traits.summary
    own = {f.name for f in fields(cls.Config)}
    assert traits.online or traits.kl == "implicit"  # an offline algorithm has no env reward or rollout to pay a KL in
    assert (traits.kl == "implicit") == ("dpo_beta" in own)  # an implicit KL is held by DPO's beta
    assert traits.group_sampling == ("group_size" in {f.name for f in fields(cls.Config)})
    env = cls.env_settings(config)
    assert ("group_size" in env) == traits.group_sampling
    # the env's default KL term in its reward, or none for an online algorithm that holds the KL elsewhere (its loss)
    assert env.get("beta") == (0.0 if traits.online and traits.kl != "reward" else None)


def test_the_coefficient_flags_mean_one_thing_each():
    grpo = train.Args(algo="grpo", kl_coef=0.02)
    assert grpo.algorithm_config().kl_coef == 0.02 and grpo.env_kwargs(torch.device("cpu"))["beta"] == 0.0
    ppo = train.Args(kl_coef=0.02)
    assert ppo.env_kwargs(torch.device("cpu"))["beta"] == 0.02
    assert train.Args(algo="dpo", dpo_beta=0.3).algorithm_config().dpo_beta == 0.3
    with pytest.warns(FutureWarning, match="--beta is deprecated: use --dpo-beta"):
        assert train.Args(algo="dpo", beta=0.3).algorithm_config().dpo_beta == 0.3
    assert train.Args(algo="grpo").algorithm_config().kl_coef == 0.04  # each default written once, in its Config


def test_a_run_of_0_8_resumes_with_its_arguments_in_todays_names():
    old = {"algo": "dpo", "dpo_loss": "ipo", "beta": 0.3, "ent_coef": 0.0, "group_size": 4, "seed": 0, "env_id": "RLHF-v0"}
    upgraded = train.upgraded_arguments(old)
    assert (upgraded["algo"], upgraded["dpo_beta"], upgraded["beta"]) == ("ipo", 0.3, None)
    assert upgraded["ent_coef"] is None and upgraded["group_size"] is None and "dpo_loss" not in upgraded
    assert train.upgraded_arguments({"algo": "ppo", "beta": 0.01})["kl_coef"] == 0.01


def test_a_truncated_or_corrupt_checkpoint_is_refused_naming_it(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as archive:  # SB3's layout: stored members, "data" naming the algorithm
        archive.writestr("data", json.dumps({"algorithm": "rloo"}))
        archive.writestr("policy.pth", bytes(range(256)) * 64)
    assert algorithm_of_checkpoint(good) is get_algorithm("rloo")
    data = good.read_bytes()
    truncated, corrupt, other = tmp_path / "truncated.zip", tmp_path / "corrupt.zip", tmp_path / "other.zip"
    truncated.write_bytes(data[: len(data) // 2])
    position = data.index(bytes(range(256)))
    corrupt.write_bytes(data[:position] + b"X" + data[position + 1:])  # one byte of policy.pth: its CRC fails
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("notes.txt", "not an agent")
    for path, message in ((truncated, "truncated or corrupt"), (corrupt, r"truncated or corrupt \(policy\.pth: bad CRC"),
                          (other, "not an agent checkpoint")):
        with pytest.raises(MissingFileError, match=message) as error:
            algorithm_of_checkpoint(path)
        assert str(path) in str(error.value)
