"""``rlhf-gym train --critic``: where TokenPPO's value function lives (agents/critic_settings.py), the reward-model
initialisation (InstructGPT's), its refusals, and a save/load round trip."""

import pytest
import torch

from rlhf_gym.agents import TokenPPO
from rlhf_gym.agents.experiment import TrainConfig, build_env_and_agent
from rlhf_gym.agents.ppo import PPOConfig
from rlhf_gym.errors import ConfigError

LISTS_V1_REWARD = "rlhf_gym/tasks/lists_v1/artifacts/reward_model"


def tiny_agent(**options):
    _, agent = build_env_and_agent(TrainConfig(algo="ppo", n_envs=4, batch_size=2, max_new_tokens=6, **options))
    return agent


def test_shared_and_separate_critics_start_at_zero_on_the_policys_trunk_or_a_copy():
    shared = tiny_agent().policy
    assert shared.critic_trunk is None and not torch.count_nonzero(shared.value_head.weight)
    separate = tiny_agent(critic="separate").policy
    assert separate.critic_trunk is not None and not torch.count_nonzero(separate.value_head.weight)
    for name, value in separate.critic_trunk.state_dict().items():  # the starting trunk's weights, in other tensors
        torch.testing.assert_close(value, separate.lm.base_model.state_dict()[name])
    assert separate.critic_trunk.wte.weight.data_ptr() != separate.lm.base_model.wte.weight.data_ptr()


def test_a_reward_model_critic_starts_as_the_env_reward_model(reward_model):
    agent = tiny_agent(critic="reward_model")
    policy, env = agent.policy, agent.batched_env
    assert env.reward_fn.model.name_or_path == policy.reward_model_path
    prompt, response = env.prompts[0], "a great film ."
    (text,) = reward_model.tokenize([prompt], [response])
    ids = torch.as_tensor(text.ids, dtype=torch.long)[None]
    with torch.no_grad():
        hidden = policy.critic_trunk(input_ids=ids).last_hidden_state
        value_at_end = policy.value_head(hidden[:, -1]).item()
    # the reviews reward model reads the last token: the critic's value there is the reward model's score of the text
    assert value_at_end == pytest.approx(float(reward_model.score([prompt], [response])[0]), abs=1e-5)
    assert torch.count_nonzero(policy.value_head.weight) > 0


def test_a_reward_model_critic_survives_a_save_and_load(tmp_path):
    agent = tiny_agent(critic="reward_model")
    agent.save(tmp_path / "agent.zip")
    loaded = TokenPPO.load(tmp_path / "agent.zip", device="cpu").policy
    assert loaded.value_init == "reward_model" and loaded.critic_trunk is not None
    for name, value in agent.policy.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value)


def test_a_reward_model_critic_needs_a_saved_reward_model_with_the_policys_tokenizer():
    def constant(prompts, responses):
        return [0.0] * len(prompts)

    with pytest.raises(ConfigError, match="reward model saved in a directory; this env's reward is a function"):
        tiny_agent(critic="reward_model", reward_model=constant)
    # the lists task's reward model reads other token ids than the reviews policy writes
    with pytest.raises(ConfigError, match=r"tokenizer of the reward model .*lists_v1.* differs from the policy's"):
        tiny_agent(critic="reward_model", reward_model=LISTS_V1_REWARD)
    tiny_agent(critic="separate", reward_model=constant)  # a separate critic needs no reward model


def test_critic_is_an_option_of_the_ppo_family_only_and_takes_its_names():
    with pytest.raises(ConfigError, match="--critic must be one of shared, separate, reward_model, got 'rm'"):
        PPOConfig(critic="rm")
    with pytest.raises(ConfigError, match="--critic: not an option of rloo"):
        TrainConfig(algo="rloo", critic="separate")
    assert TrainConfig(algo="nlpo", critic="separate").algorithm_config().critic == "separate"
