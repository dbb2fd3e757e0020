"""Scoring finished responses (rlhf_gym.scoring) by hand: a ragged batch scores each row as it scores alone,
the reference log-probs and the KL match plain forward passes, and the KL source names what was reported."""

import numpy as np
import pytest
import torch

from rlhf_gym.errors import DataError
from rlhf_gym.scoring import FALLBACK_KL_SOURCE, ScoredEpisode, as_reward_fn, checked_scores, score_episodes

PROMPTS = ["the food was", "i", "the staff at the hotel were"]
RESPONSES = ["great .", "did not like the view at all .", "rude"]


def length_reward(prompts, responses):
    """A reward that tells rows apart: the words in the response, plus a tenth of the words in the prompt."""
    return [len(r.split()) + 0.1 * len(p.split()) for p, r in zip(prompts, responses)]


def batch(tokenizer, rows, width=None):
    """Right-padded contexts ``[prompt, response, pad]`` of ``rows``, with lengths and the response token ids."""
    prompts = [tokenizer(PROMPTS[i], add_special_tokens=False)["input_ids"] for i in rows]
    responses = [tokenizer(RESPONSES[i], add_special_tokens=False)["input_ids"] + ([tokenizer.eos_token_id] if i == 0 else [])
                 for i in rows]  # response 0 ends with EOS
    width = width or max(len(p) + len(r) for p, r in zip(prompts, responses))
    contexts = torch.full((len(rows), width), tokenizer.pad_token_id)
    for k, (p, r) in enumerate(zip(prompts, responses)):
        contexts[k, : len(p) + len(r)] = torch.tensor(p + r)
    return contexts, torch.tensor([len(p) for p in prompts]), torch.tensor([len(r) for r in responses]), prompts, responses


def plain_ref_logprobs(ref_model, prompt, response, temperature=1.0):
    with torch.no_grad():
        logp = torch.log_softmax(ref_model(torch.tensor([prompt + response])).logits[0].float() / temperature, -1)
    return np.array([logp[len(prompt) - 1 + t, token].item() for t, token in enumerate(response)])


def score(ref_model, tokenizer, rows, logprobs, estimator="k1", temperature=1.0, width=None):
    contexts, prompt_lens, response_lens, _, _ = batch(tokenizer, rows, width)
    return score_episodes(ref_model, length_reward, contexts, prompt_lens, response_lens, logprobs,
                          [PROMPTS[i] for i in rows], [RESPONSES[i] for i in rows], [i == 0 for i in rows],
                          kl_estimator=estimator, temperature=temperature, no_eos_penalty=0.5)


def reported(tokenizer, rows, budget=12):
    """Made-up reported log-probs for each row's tokens; the entries past a row's response are garbage (-50)."""
    _, _, response_lens, _, _ = batch(tokenizer, rows)
    values = torch.full((len(rows), budget), -50.0)
    for k, (row, n) in enumerate(zip(rows, response_lens.tolist())):
        values[k, :n] = -torch.linspace(0.1, 1.5, n) * (row + 1)
    return values


@pytest.mark.parametrize("estimator", ["k1", "k3"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_a_ragged_batch_scores_each_row_as_alone_and_as_by_hand(ref_model, tokenizer, estimator, temperature):
    rows = [0, 1, 2]
    logprobs = reported(tokenizer, rows)
    together = score(ref_model, tokenizer, rows, logprobs, estimator, temperature, width=40)  # extra padding too
    _, _, _, prompts, responses = batch(tokenizer, rows)
    assert len({len(r) for r in responses}) == 3 and len({len(p) for p in prompts}) == 3  # truly ragged
    for k, row in enumerate(rows):
        alone = score(ref_model, tokenizer, [row], logprobs[k:k + 1], estimator, temperature)[0]
        episode = together[k]
        assert episode.kl == pytest.approx(alone.kl, abs=1e-5)
        assert episode.ref_logprob == pytest.approx(alone.ref_logprob, abs=1e-5)
        np.testing.assert_allclose(episode.kl_per_token, alone.kl_per_token, atol=1e-5)
        assert (episode.proxy_reward, episode.penalty, episode.kl_source) == (alone.proxy_reward, alone.penalty,
                                                                              alone.kl_source)
        ref = plain_ref_logprobs(ref_model, prompts[k], responses[k], temperature)
        log_ratio = logprobs[k, : len(responses[k])].double().numpy() - ref
        per_token = log_ratio if estimator == "k1" else np.expm1(-log_ratio) + log_ratio
        assert episode.kl_per_token.shape == (len(responses[k]),)
        np.testing.assert_allclose(episode.kl_per_token, per_token, atol=1e-4)
        assert episode.kl == pytest.approx(per_token.sum(), abs=1e-4)
        assert episode.ref_logprob == pytest.approx(ref.sum(), abs=1e-4)
        assert episode.proxy_reward == pytest.approx(len(RESPONSES[row].split()) + 0.1 * len(PROMPTS[row].split()))
        assert episode.kl_source == "reported"
    assert [e.penalty for e in together] == [0.0, 0.5, 0.5]  # row 0 ended with EOS


def test_kl_source_and_the_fallback_log_prob(ref_model, tokenizer):
    rows = [0, 1, 2]
    logprobs = reported(tokenizer, rows)
    logprobs[0, :] = float("nan")  # row 0 reported nothing: log pi := 0
    logprobs[1, 2] = float("nan")  # row 1 missed one token
    logprobs[2, 5:] = float("nan")  # row 2 (one token) reported it; NaN past the response does not count
    episodes = score(ref_model, tokenizer, rows, logprobs)
    assert [e.kl_source for e in episodes] == [FALLBACK_KL_SOURCE, "mixed", "reported"]
    _, _, _, prompts, responses = batch(tokenizer, rows)
    ref0 = plain_ref_logprobs(ref_model, prompts[0], responses[0])
    assert episodes[0].kl == pytest.approx(-ref0.sum(), abs=1e-4)
    ref1 = plain_ref_logprobs(ref_model, prompts[1], responses[1])
    policy1 = logprobs[1, : len(responses[1])].double().numpy()
    policy1[2] = 0.0
    assert episodes[1].kl == pytest.approx((policy1 - ref1).sum(), abs=1e-4)


def test_terminal_reward():
    episode = ScoredEpisode(proxy_reward=2.0, kl=3.0, kl_per_token=np.zeros(1), ref_logprob=-1.0,
                            ref_token_logprobs=np.full(1, -1.0, dtype=np.float32), penalty=0.5,
                            kl_source="reported")
    assert episode.terminal_reward(0.1) == pytest.approx(2.0 - 0.3 - 0.5)


def test_checked_scores():
    np.testing.assert_array_equal(checked_scores(torch.tensor([[1.0], [2.0]]), ["a", "b"]), [1.0, 2.0])
    assert checked_scores([1, 2], ["a", "b"]).dtype == np.float64
    with pytest.raises(DataError, match="reward function returned 1 scores for 2 responses"):
        checked_scores([1.0], ["a", "b"])
    with pytest.raises(DataError, match=r"returned inf for response 1 \(prompt 'b'\); refusing to use it"):
        checked_scores([1.0, float("inf"), float("nan")], ["a", "b", "c"])


def test_as_reward_fn_passes_callables_loads_paths_and_refuses_the_rest(task, reward_model):
    assert as_reward_fn(length_reward) is length_reward
    loaded = as_reward_fn(str(task.reward_dir))
    np.testing.assert_allclose(loaded(PROMPTS, RESPONSES), reward_model(PROMPTS, RESPONSES), atol=1e-6)
    with pytest.raises(TypeError, match="reward_model must be a RewardModel, an HF name/path or a callable, got int"):
        as_reward_fn(3)


def test_defaults_are_k1_at_temperature_1_without_a_penalty(ref_model, tokenizer):
    rows = [1, 2]  # no EOS in either
    contexts, prompt_lens, response_lens, prompts, responses = batch(tokenizer, rows)
    logprobs = reported(tokenizer, rows)
    episodes = score_episodes(ref_model, length_reward, contexts, prompt_lens, response_lens, logprobs,
                              [PROMPTS[i] for i in rows], [RESPONSES[i] for i in rows], [False, False])
    for k, episode in enumerate(episodes):
        ref = plain_ref_logprobs(ref_model, prompts[k], responses[k])
        assert episode.kl == pytest.approx((logprobs[k, : len(responses[k])].double().numpy() - ref).sum(), abs=1e-4)
        assert episode.penalty == 0.0


def test_checked_scores_accepts_a_tensor_that_requires_grad():
    scores = torch.tensor([0.5, -1.0], requires_grad=True) * 2  # a reward model's output, still in the graph
    np.testing.assert_array_equal(checked_scores(scores, ["a", "b"]), [1.0, -2.0])
