"""TokenPPO: the update's log keys, env ids through Gymnasium's registry, the policy's default model and tokenizer
check, VecEnv wrappers refused, SB3's rollout-buffer contract, amp settings."""

import pytest
import torch
from stable_baselines3.common.vec_env import VecNormalize

from rlhf_gym.agents import RLHFVecEnv, SequenceRolloutBuffer, TokenPPO
from rlhf_gym.envs import RLHFEnv
from rlhf_gym.errors import ConfigError


def small_agent(task, seed=0, env_kwargs=None, **kwargs):
    env = RLHFVecEnv(num_envs=8, task=task, max_new_tokens=10, beta=0.1, **(env_kwargs or {}))
    return TokenPPO("TransformerPolicy", env, n_epochs=2, batch_size=4, seed=seed, device="cpu", **kwargs)


def test_update_logs_the_sb3_and_rlhf_keys(task):
    agent = small_agent(task)
    agent.learn(2 * 8 * 10, progress_bar=False)
    values = agent.logger.name_to_value
    for key in ("train/approx_kl", "train/clip_fraction", "train/value_loss", "train/explained_variance",
                "train/policy_gradient_loss", "train/entropy_loss"):
        assert key in values, key
    assert agent._n_updates > 0 and agent.num_timesteps >= 160
    assert len(agent.last_rollout_infos) == 8 and all("proxy_reward" in i for i in agent.last_rollout_infos)


def test_rollout_buffer_is_plugged_in_through_sb3(task):
    agent = small_agent(task)
    assert agent.rollout_buffer_class is SequenceRolloutBuffer
    assert isinstance(agent.rollout_buffer, SequenceRolloutBuffer)
    assert (agent.rollout_buffer.n_envs, agent.rollout_buffer.buffer_size) == (8, 10)


def test_env_id_is_resolved_through_the_gymnasium_registry(task):
    agent = TokenPPO("TransformerPolicy", "RLHF-Reviews-Short-v0", n_envs=4, device="cpu")
    assert agent.batched_env.max_new_tokens == 12 and agent.n_steps == 12  # the id's registered argument
    override = TokenPPO("TransformerPolicy", "RLHF-Reviews-Short-v0", n_envs=4, env_kwargs={"max_new_tokens": 5},
                        device="cpu")
    assert override.batched_env.max_new_tokens == 5
    with pytest.raises(ConfigError, match="unknown env id"):
        TokenPPO("TransformerPolicy", "RLHF-NoSuchTask-v0", device="cpu")


def test_env_ids_registered_by_third_parties_work(task):
    import gymnasium as gym

    gym.register("ThirdParty-RLHF-Tiny-v0", entry_point="rlhf_gym.envs.rlhf_env:RLHFEnv",
                 vector_entry_point="rlhf_gym.envs.vector_env:RLHFVectorEnv", kwargs={"max_new_tokens": 3, "beta": 0.5})
    try:
        agent = TokenPPO("TransformerPolicy", "ThirdParty-RLHF-Tiny-v0", n_envs=2, device="cpu")
        assert agent.batched_env.max_new_tokens == 3 and agent.batched_env.beta == 0.5
    finally:
        gym.registry.pop("ThirdParty-RLHF-Tiny-v0")


def test_policy_defaults_to_the_env_reference_model(task, ref_model, tokenizer):
    import copy

    other = copy.deepcopy(ref_model)
    with torch.no_grad():
        other.lm_head.weight.mul_(0.5) if hasattr(other, "lm_head") else None
        next(other.parameters()).add_(0.01)
    env = RLHFVecEnv(num_envs=2, task=task, ref_model=other, tokenizer=tokenizer, max_new_tokens=4)
    agent = TokenPPO("TransformerPolicy", env, device="cpu")
    for name, value in other.state_dict().items():
        torch.testing.assert_close(agent.policy.lm.state_dict()[name], value)
    assert agent.policy.lm is not other  # a trainable copy; the reference stays frozen
    assert all(not p.requires_grad for p in other.parameters()) and all(p.requires_grad for p in agent.policy.lm.parameters())
    default = small_agent(task)
    assert default.policy_kwargs["model_name_or_path"] == str(task.policy_dir)


def test_a_policy_with_another_tokenizer_is_refused(task, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(task.policy_dir)
    vocab = tokenizer.get_vocab()
    swapped = dict(vocab)
    first, second = sorted(vocab)[5], sorted(vocab)[6]
    swapped[first], swapped[second] = vocab[second], vocab[first]  # same size, two ids exchanged
    from tokenizers import Tokenizer
    import json

    data = json.loads(tokenizer.backend_tokenizer.to_str())
    data["model"]["vocab"] = swapped
    AutoModelForCausalLM.from_pretrained(task.policy_dir).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    Tokenizer.from_str(json.dumps(data)).save(str(tmp_path / "tokenizer.json"))
    env = RLHFVecEnv(num_envs=2, task=task, max_new_tokens=4)
    with pytest.raises(ConfigError, match=r"tokenizer of policy .* differs"):
        TokenPPO("TransformerPolicy", env, policy_kwargs={"model_name_or_path": str(tmp_path)}, device="cpu")


def test_env_must_be_the_batched_bridge(task):
    with pytest.raises(TypeError, match=r"needs an rlhf_gym\.agents\.RLHFVecEnv"):
        TokenPPO("TransformerPolicy", RLHFEnv(task=task))


def test_a_vec_env_wrapper_is_refused_not_bypassed(task):
    env = VecNormalize(RLHFVecEnv(num_envs=2, task=task, max_new_tokens=4), norm_obs=False)
    with pytest.raises(TypeError, match="VecNormalize wraps the RLHF env"):
        TokenPPO("TransformerPolicy", env)


def test_amp_settings(task):
    with pytest.raises(ConfigError, match="amp"):
        small_agent(task, amp="int8")
    agent = small_agent(task, amp="fp16")  # CPU: autocast and the gradient scaler are off
    assert not agent._grad_scaler.is_enabled()
    agent.learn(8 * 10, progress_bar=False)
    assert agent._n_updates > 0


def test_bf16_autocasts_on_the_cpu(task):
    agent = small_agent(task, amp="bf16")
    head_dtypes = set()
    agent.policy.lm.get_output_embeddings().register_forward_hook(lambda _m, _i, out: head_dtypes.add(out.dtype))
    agent.learn(8 * 10, progress_bar=False)  # a rollout and an update under bf16 autocast
    assert head_dtypes == {torch.bfloat16}  # the matmuls ran in bf16, sampling and update alike
    assert agent._n_updates > 0 and all(p.dtype == torch.float32 for p in agent.policy.parameters())


@pytest.mark.parametrize("placement", ["terminal", "per_token"])
def test_every_reward_lands_on_its_response_tokens(task, placement):
    """Deferred scoring (the default with the KL paid at the end) pays rows that ended early in the last step: the agent
    puts each reward on the row's last token, where an on-finish env pays it (and per-token rewards stay dense)."""
    agent = small_agent(task, env_kwargs={"kl_placement": placement})
    assert agent.batched_env.scoring_deferred == (placement == "terminal")
    agent.learn(8 * 10, progress_bar=False)
    buffer, infos = agent.rollout_buffer, agent.last_rollout_infos
    lengths = buffer.response_mask.sum(1)
    assert lengths.min() < lengths.max()  # some rows ended before others
    rows = torch.arange(8)
    paid = (buffer.rewards * buffer.response_mask).sum(1)
    if placement == "terminal":
        assert torch.count_nonzero(buffer.rewards[rows, lengths - 1]) == 8
        assert torch.count_nonzero(buffer.rewards * buffer.response_mask) == 8
    expected = torch.tensor([i["proxy_reward"] - i["beta"] * i["kl"] - i["penalty"] for i in infos])
    torch.testing.assert_close(paid, expected, atol=1e-5, rtol=0)
