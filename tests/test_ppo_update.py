"""TokenPPO's update by hand: the clipped surrogate for ratios outside the clip range (both signs of the advantage),
the clipped value loss, the sign of the entropy loss, the total loss, gradient clipping, the approximate-KL early stop;
and the log-probs a rollout reports to the env (every episode's KL is the sampling policy's against the reference).

The update tests fill the rollout buffer by hand: the "old" log-probs are the policy's current ones shifted by
``-log(ratio)``, so the update sees exactly the ratio chosen for each row, and the old values are the critic's
current ones (0: the value head starts at zero) shifted by ``-d``. With ``gamma = lambda = 1`` every token of a row
then has the return ``R`` (the row's reward) and the advantage ``R + d``.
"""

import math

import numpy as np
import pytest
import torch
from stable_baselines3.common.logger import configure

from rlhf_gym.agents import RLHFVecEnv, TokenPPO
from rlhf_gym.generation import left_pad

LENGTHS = [1, 2, 3, 2, 2]
RATIOS = [1.5, 1.5, 0.5, 0.5, 1.1]  # clip range 0.2: all but the last row are outside [0.8, 1.2]
ADVANTAGES = [1.0, -1.0, 2.0, -2.0, -1.0]
VALUE_SHIFTS = [1.0, -1.0, 0.1, -0.5, 1.0]  # d = V_new - V_old; the value clip range is 0.2
RETURNS = [a - d for a, d in zip(ADVANTAGES, VALUE_SHIFTS)]  # R = A - d: [0, 0, 1.9, -1.5, -2]
N_TOKENS = sum(LENGTHS)


def constant_reward(prompts, responses):
    return [0.0] * len(prompts)


def make_agent(task, **kwargs):
    env = RLHFVecEnv(num_envs=len(LENGTHS), task=task, prompts=task.train_prompts[:len(LENGTHS)],
                     reward_model=constant_reward, max_new_tokens=max(LENGTHS), beta=0.1)
    settings = dict(n_epochs=1, batch_size=len(LENGTHS), gamma=1.0, gae_lambda=1.0, normalize_advantage=False,
                    clip_range=0.2, clip_range_vf=0.2, ent_coef=0.0, vf_coef=0.5, learning_rate=1e-3, seed=0, device="cpu")
    agent = TokenPPO("TransformerPolicy", env, **{**settings, **kwargs})
    agent.set_logger(configure(None, []))
    return agent


def fill_buffer(agent, value_bias=0.0):
    """The hand-made rollout of the module docstring; returns the policy's (log-probs, entropies, values, mask).

    ``value_bias``: the critic's constant output V_new (its zero-initialised head gets this bias).
    """
    with torch.no_grad():
        agent.policy.value_head.bias.fill_(value_bias)
    env = agent.batched_env
    n, width = len(LENGTHS), max(LENGTHS)
    queries, query_mask = left_pad(env.prompt_ids[:n], env.pad_token_id)
    great, dot = env.tokenizer.convert_tokens_to_ids(["great", "."])
    responses = torch.tensor([[great, dot, env.stop_token_id]] * n)[:, :width]
    mask = torch.arange(width)[None, :] < torch.tensor(LENGTHS)[:, None]
    with torch.no_grad():
        logprobs, entropy, values = agent.policy.evaluate_sequences(queries, query_mask, responses, mask)
    torch.testing.assert_close(values, torch.full_like(values, value_bias))  # zero weights: V_new = the bias
    buffer = agent.rollout_buffer
    buffer.start(queries, query_mask)
    log_ratio = torch.log(torch.tensor(RATIOS))
    shifts = torch.tensor(VALUE_SHIFTS)
    for t in range(width):
        last = torch.tensor([t == length - 1 for length in LENGTHS])
        buffer.add(responses[:, t], mask[:, t], logprobs[:, t] - log_ratio, values[:, t] - shifts,
                   torch.where(last, torch.tensor(RETURNS), torch.zeros(n)))
    buffer.compute_returns_and_advantage()
    return logprobs, entropy, values, mask


def per_token(row_values):
    """Row values repeated over each row's tokens, as a flat array of N_TOKENS entries."""
    return np.repeat(np.asarray(row_values, dtype=np.float64), LENGTHS)


def logged(agent, key):
    return agent.logger.name_to_value[key]


def test_buffer_holds_the_designed_advantages_and_returns(task):
    agent = make_agent(task)
    _, _, _, mask = fill_buffer(agent)
    buffer = agent.rollout_buffer
    np.testing.assert_allclose(buffer.advantages[mask].numpy(), per_token(ADVANTAGES), atol=1e-6)
    np.testing.assert_allclose(buffer.returns[mask].numpy(), per_token(RETURNS), atol=1e-6)


def test_clipped_surrogate_by_hand(task):
    agent = make_agent(task)
    fill_buffer(agent)
    agent.train()
    # loss per token = max(-A r, -A clip(r, 0.8, 1.2)):
    #   r = 1.5, A = +1 -> -1.2 (clipped)      r = 1.5, A = -1 -> 1.5 (unclipped)
    #   r = 0.5, A = +2 -> -1.0 (unclipped)    r = 0.5, A = -2 -> 1.6 (clipped)      r = 1.1, A = -1 -> 1.1
    expected = (-1.2 * 1 + 1.5 * 2 - 1.0 * 3 + 1.6 * 2 + 1.1 * 2) / N_TOKENS
    assert expected == pytest.approx(0.42)
    assert logged(agent, "train/policy_gradient_loss") == pytest.approx(expected, abs=1e-5)
    assert logged(agent, "train/clip_fraction") == pytest.approx(8 / N_TOKENS)
    approx_kl = np.mean([r - 1 - math.log(r) for r in per_token(RATIOS)])  # k3 of the new policy against the old
    assert logged(agent, "train/approx_kl") == pytest.approx(approx_kl, abs=1e-5)
    assert logged(agent, "train/clip_range") == 0.2
    # explained variance of the rollout's values V_old = -d against its returns R, over the real tokens
    returns, old_values = per_token(RETURNS), -per_token(VALUE_SHIFTS)
    explained = 1 - np.var(returns - old_values) / np.var(returns)
    assert logged(agent, "train/explained_variance") == pytest.approx(explained, abs=1e-5)
    assert agent.logger.name_to_excluded["train/n_updates"] == ("tensorboard",)


def test_schedules_are_read_at_the_current_progress(task):
    """Learning rate and clip ranges may be schedules of the progress remaining (SB3): the update reads them there."""
    agent = make_agent(task, learning_rate=lambda progress: 2e-3 * progress, clip_range=lambda progress: 0.4 * progress,
                       clip_range_vf=lambda progress: 0.4 * progress)
    agent._current_progress_remaining = 0.5  # what SB3's learn sets half-way through
    fill_buffer(agent)
    agent.train()
    assert logged(agent, "train/learning_rate") == pytest.approx(1e-3)
    assert agent.policy.optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert logged(agent, "train/clip_range") == pytest.approx(0.2)
    assert logged(agent, "train/clip_range_vf") == pytest.approx(0.2)
    assert logged(agent, "train/policy_gradient_loss") == pytest.approx(0.42, abs=1e-5)
    assert logged(agent, "train/value_loss") == pytest.approx(0.5 * (0.64 + 0.64 * 2 + 3.61 * 3 + 3.24 * 2 + 8.0) / N_TOKENS,
                                                              abs=1e-5)


def test_advantages_are_whitened_over_the_rollout_when_asked(task):
    agent = make_agent(task, normalize_advantage=True)
    fill_buffer(agent)
    agent.train()
    advantages = per_token(ADVANTAGES)
    whitened = (advantages - advantages.mean()) / np.sqrt(advantages.var() + 1e-8)
    ratios = per_token(RATIOS)
    expected = np.mean(np.maximum(-whitened * ratios, -whitened * np.clip(ratios, 0.8, 1.2)))
    assert logged(agent, "train/policy_gradient_loss") == pytest.approx(expected, abs=1e-5)


def test_normalize_rewards_divides_by_the_running_return_std(task):
    agent = make_agent(task, normalize_rewards=True)
    _, _, _, mask = fill_buffer(agent)
    buffer = agent.rollout_buffer
    agent._compute_advantages(buffer, {})
    # returns R = [0, 0, 1.9, -1.5, -2]: batch mean -1.6 / 5 = -0.32, batch var (3.61 + 2.25 + 4) / 5 - 0.32^2 = 1.8696.
    # RunningMeanStd starts at mean 0, var 1, count 1e-4; with the batch (count 5): count 5.0001,
    # mean -0.32 * 5 / 5.0001, var (1 * 1e-4 + 1.8696 * 5 + 0.32^2 * 1e-4 * 5 / 5.0001) / 5.0001 = 1.86958465626...
    rms = agent.return_rms
    assert rms.count == pytest.approx(5.0001, rel=1e-12)
    # the returns are summed from float32 rewards (1.9 is not exact there): statistics to 1e-6
    assert rms.mean == pytest.approx(-0.32 * 5 / 5.0001, rel=1e-6)
    var1 = (1 * 1e-4 + 1.8696 * 5 + 0.32 ** 2 * 1e-4 * 5 / 5.0001) / 5.0001
    assert var1 == pytest.approx(1.8695846562659, rel=1e-12) and rms.var == pytest.approx(var1, rel=1e-6)
    scale = np.sqrt(var1 + 1e-8)  # 1.36732756...: not the variance, not the batch's own std (1.36733...), not 1
    np.testing.assert_allclose(buffer.rewards.sum(1).numpy(), np.array(RETURNS) / scale, rtol=1e-6, atol=1e-7)
    # GAE then runs on the scaled rewards (gamma = lambda = 1): every token's return is R / scale, advantage R / scale + d
    np.testing.assert_allclose(buffer.returns[mask].numpy(), per_token(RETURNS) / scale, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(buffer.advantages[mask].numpy(), per_token(RETURNS) / scale + per_token(VALUE_SHIFTS),
                               rtol=1e-6, atol=1e-6)
    # a second rollout with returns 2R (batch mean -0.64, var 4 * 1.8696 = 7.4784, count 5) joins the running statistics:
    # delta = -0.64 - mean1; var = (var1 * 5.0001 + 7.4784 * 5 + delta^2 * 5.0001 * 5 / 10.0001) / 10.0001 = 4.69956530832...
    # (the batch's own variance, 7.4784, would give another scale)
    fill_buffer(agent)
    buffer.rewards *= 2
    agent._compute_advantages(buffer, {})
    mean1 = -0.32 * 5 / 5.0001
    delta = -0.64 - mean1
    var2 = (var1 * 5.0001 + 7.4784 * 5 + delta ** 2 * 5.0001 * 5 / 10.0001) / 10.0001
    assert var2 == pytest.approx(4.699565308324, rel=1e-11)
    assert rms.count == pytest.approx(10.0001, rel=1e-12) and rms.var == pytest.approx(var2, rel=1e-6)
    assert rms.mean == pytest.approx(mean1 + delta * 5 / 10.0001, rel=1e-6)
    np.testing.assert_allclose(buffer.rewards.sum(1).numpy(), 2 * np.array(RETURNS) / np.sqrt(var2 + 1e-8),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("clip_range_vf, expected", [
    # (V - R)^2 against (V_old + clip(V - V_old, -0.2, 0.2) - R)^2 with V = 0, V_old = -d, per row:
    # d=1, R=0: 0 | 0.64;  d=-1, R=0: 0 | 0.64;  d=0.1, R=1.9: 3.61 | 3.61;  d=-0.5, R=-1.5: 2.25 | 3.24;
    # d=1, R=-2: 4 | 1.44.  The loss takes the larger of the two, half the token mean.
    (0.2, 0.5 * (0.64 * 1 + 0.64 * 2 + 3.61 * 3 + 3.24 * 2 + 4.0 * 2) / N_TOKENS),
    (None, 0.5 * (0.0 * 1 + 0.0 * 2 + 3.61 * 3 + 2.25 * 2 + 4.0 * 2) / N_TOKENS),
])
def test_value_loss_by_hand(task, clip_range_vf, expected):
    agent = make_agent(task, clip_range_vf=clip_range_vf)
    fill_buffer(agent)
    agent.train()
    assert logged(agent, "train/value_loss") == pytest.approx(expected, abs=1e-5)
    assert ("train/clip_range_vf" in agent.logger.name_to_value) == (clip_range_vf is not None)


@pytest.mark.parametrize("clip_range_vf", [0.2, None])
def test_value_loss_with_a_non_zero_critic(task, clip_range_vf):
    agent = make_agent(task, clip_range_vf=clip_range_vf)
    fill_buffer(agent, value_bias=0.3)
    agent.train()
    v, d, returns = 0.3, per_token(VALUE_SHIFTS), per_token(RETURNS)  # V_old = V - d; the returns stay R
    clipped = v - d + np.clip(d, -0.2, 0.2) if clip_range_vf else np.full_like(d, v)
    expected = 0.5 * np.mean(np.maximum((v - returns) ** 2, (clipped - returns) ** 2))
    assert logged(agent, "train/value_loss") == pytest.approx(expected, abs=1e-5)


def test_entropy_loss_is_minus_the_mean_entropy_and_the_total_loss_adds_the_weighted_terms(task):
    agent = make_agent(task, ent_coef=0.25, vf_coef=0.75)
    _, entropy, _, mask = fill_buffer(agent)
    agent.train()
    mean_entropy = float(entropy[mask].mean())
    assert mean_entropy > 0.1
    assert logged(agent, "train/entropy_loss") == pytest.approx(-mean_entropy, abs=1e-5)  # a bonus: logged negative
    pg, value = logged(agent, "train/policy_gradient_loss"), logged(agent, "train/value_loss")
    assert pg == pytest.approx(0.42, abs=1e-5)
    assert logged(agent, "train/loss") == pytest.approx(pg - 0.25 * mean_entropy + 0.75 * value, abs=1e-5)


def gradient_norm(agent):
    grads = [p.grad.flatten() for p in agent.policy.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.cat(grads)))


def test_gradients_are_clipped_to_max_grad_norm(task):
    free = make_agent(task, max_grad_norm=1e6)
    fill_buffer(free)
    free.train()
    assert gradient_norm(free) > 0.05  # the unclipped gradient of this batch
    clipped = make_agent(task, max_grad_norm=0.01)
    fill_buffer(clipped)
    clipped.train()
    assert gradient_norm(clipped) == pytest.approx(0.01, rel=1e-3)


def test_gradients_are_reset_before_each_minibatch(task):
    """With a learning rate of 0 every epoch sees the same loss: the gradient left after 2 epochs is one epoch's."""
    norms = []
    for epochs in (1, 2):
        agent = make_agent(task, n_epochs=epochs, learning_rate=0.0, max_grad_norm=1e6)
        fill_buffer(agent)
        agent.train()
        norms.append(gradient_norm(agent))
    assert norms[1] == pytest.approx(norms[0], rel=1e-5)


def test_minibatch_order_comes_from_the_agents_seeded_generator(task):
    """Two agents with the same seed make the same update, whatever the global random state."""
    results = []
    for noise in (0, 5):
        agent = make_agent(task, batch_size=2, n_epochs=2, seed=3)
        fill_buffer(agent)
        torch.rand(noise)  # consume the global generator differently
        agent.train()
        results.append(parameters(agent))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


def parameters(agent):
    return torch.cat([p.detach().flatten().clone() for p in agent.policy.parameters()])


@pytest.mark.parametrize("margin, updates", [(0.99, False), (1.01, True)])
def test_early_stop_when_the_approximate_kl_passes_one_and_a_half_target_kl(task, margin, updates, capsys):
    approx_kl = np.mean([r - 1 - math.log(r) for r in per_token(RATIOS)])
    agent = make_agent(task, target_kl=margin * approx_kl / 1.5, n_epochs=3, verbose=1)
    fill_buffer(agent)
    before = parameters(agent)
    capsys.readouterr()
    agent.train()
    changed = not torch.equal(parameters(agent), before)
    assert changed == updates
    if not updates:
        assert capsys.readouterr().out == f"Early stopping at epoch 0 due to reaching max kl: {approx_kl:.3f}\n"
    n_updates = logged(agent, "train/n_updates")
    assert n_updates == 1 if not updates else n_updates > 1  # a stop ends the epochs too


def test_the_early_stop_decides_on_the_mean_over_the_processes(task):
    """In a data-parallel run every process must stop alike (else the others wait in the gradient all-reduce): the
    decision is on the approximate KL's mean over the processes, here another process's far larger one."""
    approx_kl = np.mean([r - 1 - math.log(r) for r in per_token(RATIOS)])
    agent = make_agent(task, target_kl=1.01 * approx_kl / 1.5, n_epochs=3)  # this process alone would update
    fill_buffer(agent)
    seen = []

    def mean_with_another_process(values):
        seen.append(list(values))
        return float(np.mean([*values, 100.0]))

    agent.parallel.mean = mean_with_another_process
    before = parameters(agent)
    agent.train()
    assert torch.equal(parameters(agent), before)  # stopped at the first minibatch, as the other process did
    assert seen[0] == [pytest.approx(approx_kl)]


def test_every_epoch_counts_as_an_update(task):
    agent = make_agent(task, n_epochs=3, learning_rate=0.0)
    fill_buffer(agent)
    agent.train()
    assert logged(agent, "train/n_updates") == 3
    assert logged(agent, "train/policy_gradient_loss") == pytest.approx(0.42, abs=1e-5)  # lr 0: the same loss each epoch


# ------------------------------------------------------------------------------ log-probs reported in a rollout
@pytest.mark.parametrize("masked", [False, True])
def test_every_reported_logprob_is_the_sampled_tokens(task, ref_model, masked):
    """Each episode's KL is ``sum_t log pi(y_t) - log pi_ref(y_t)`` of the policy that sampled it (not the masked
    sampler of NLPO), computed here with plain forward passes."""
    env_kwargs = {"mask_top_p": 0.6} if masked else {}
    env = RLHFVecEnv(num_envs=6, task=task, prompts=task.train_prompts[:6], reward_model=constant_reward,
                     max_new_tokens=6, beta=0.1, **env_kwargs)
    agent = TokenPPO("TransformerPolicy", env, use_action_masks=masked, learning_rate=0.0, n_epochs=1, seed=0,
                     device="cpu")
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # move the policy away from the reference, so that the KL is not 0
        for p in agent.policy.lm.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    agent.learn(1)  # one rollout, then an update that changes nothing (learning rate 0)
    buffer = agent.rollout_buffer
    infos = agent.last_rollout_infos
    assert len(infos) == 6 and all(info["kl_source"] == "reported" for info in infos)
    expected_kl, expected_ref = [], []
    with torch.no_grad():
        for row in range(6):
            prompt = buffer.queries[row][buffer.query_mask[row].bool()].tolist()
            response = buffer.responses[row][buffer.response_mask[row]].tolist()
            ids = torch.tensor([prompt + response])
            policy_logp = torch.log_softmax(agent.policy.lm(ids).logits[0].float(), -1)
            ref_logp = torch.log_softmax(ref_model(ids).logits[0].float(), -1)
            positions = torch.arange(len(prompt) - 1, len(prompt) - 1 + len(response))
            tokens = torch.tensor(response)
            ref = ref_logp[positions, tokens]
            expected_kl.append(float((policy_logp[positions, tokens] - ref).sum()))
            expected_ref.append(float(ref.sum()))
    assert max(abs(k) for k in expected_kl) > 0.05
    np.testing.assert_allclose(sorted(i["kl"] for i in infos), sorted(expected_kl), atol=1e-4)
    np.testing.assert_allclose(sorted(i["ref_logprob"] for i in infos), sorted(expected_ref), atol=1e-4)


def test_the_nlpo_update_uses_the_masked_log_probs(task):
    """NLPO's ratio compares masked log-probs with the masked log-probs it sampled with: before the first step the
    ratio is exactly 1 (approximate KL 0). Unmasked log-probs in the update would give a ratio != 1 at once."""
    env = RLHFVecEnv(num_envs=4, task=task, prompts=task.train_prompts[:4], reward_model=constant_reward,
                     max_new_tokens=5, beta=0.1, mask_top_p=0.5)
    agent = TokenPPO("TransformerPolicy", env, use_action_masks=True, n_epochs=1, batch_size=4, seed=0, device="cpu")
    agent.learn(1)  # one rollout, one minibatch: approx_kl is measured before its step
    assert logged(agent, "train/approx_kl") == pytest.approx(0.0, abs=1e-6)
    assert logged(agent, "train/clip_fraction") == 0.0
