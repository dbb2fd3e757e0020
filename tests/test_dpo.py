"""DPO (agents/dpo.py): the loss by hand, its gradient, the reference cache, tokenisation as the env samples, save/load/
resume, callbacks and logging, input validation, and a learning signal on the reviews task's preferences."""

import json
import math
import random

import pytest
import torch
from stable_baselines3.common.callbacks import CheckpointCallback
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

from rlhf_gym.agents import train
from rlhf_gym.agents.dpo import DPO, dpo_loss, sequence_logps, tokenize_response
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.errors import ConfigError, DataError, MissingFileError, TrainingDivergedError
from rlhf_gym.generation import decode_responses, left_pad, sample
from rlhf_gym.gpt2 import gpt2_config
from rlhf_gym.preferences import load_preferences
from rlhf_gym.utils import load_model
from helpers import one_thread  # noqa: F401  (an autouse fixture: one torch thread for the module)




@pytest.fixture(scope="module")
def records(task):
    return load_preferences(task.artifacts_dir / "preferences.jsonl")[:64]


def tiny_lm(tokenizer, seed: int = 0, positions: int = 64) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    return GPT2LMHeadModel(gpt2_config(tokenizer, 16, 1, heads=2, positions=positions))


def tiny_dpo(tokenizer, comparisons, **kwargs) -> DPO:
    options = {"learning_rate": 1e-2, "batch_size": 4, "device": "cpu", **kwargs}
    return DPO(tiny_lm(tokenizer), None, tokenizer, comparisons, **options)


# ------------------------------------------------------------------------------------------- the loss
def test_dpo_loss_by_hand():
    # h = (-1 - -2) - (-3 - -2) = 2 for the first pair, (-2 - -1) - (-1 - -1) = -1 for the second; beta = 0.5
    args = (torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0]), torch.tensor([-2.0, -1.0]), torch.tensor([-2.0, -1.0]))
    losses, chosen, rejected = dpo_loss(*args, beta=0.5)
    softplus = lambda x: math.log1p(math.exp(x))  # -log sigmoid(z) = log(1 + e^-z)  # noqa: E731
    assert losses.tolist() == pytest.approx([softplus(-1.0), softplus(0.5)])  # beta * h = 1 and -0.5
    assert chosen.tolist() == pytest.approx([0.5, -0.5]) and rejected.tolist() == pytest.approx([-0.5, 0.0])
    smoothed, _, _ = dpo_loss(*args, beta=0.5, label_smoothing=0.2)
    assert smoothed.tolist() == pytest.approx([0.8 * softplus(-1.0) + 0.2 * softplus(1.0),
                                               0.8 * softplus(0.5) + 0.2 * softplus(-0.5)])
    ipo, _, _ = dpo_loss(*args, beta=0.5, loss_type="ipo")  # (h - 1 / (2 * 0.5))^2
    assert ipo.tolist() == pytest.approx([(2 - 1) ** 2, (-1 - 1) ** 2])



def test_ipo_target_gap_is_one_over_two_beta_at_any_beta():
    """At beta = 0.25 IPO's target gap is 1 / (2 * 0.25) = 2 nats (not 1, as at the default beta 0.5, nor 1 / beta = 4)."""
    # row 0: h = (-1 - -2) - (-4 - -2) = 1 + 2 = 3; loss (3 - 2)^2 = 1
    # row 1: h = (-3 - -2) - (-2 - -2) = -1 - 0 = -1; loss (-1 - 2)^2 = 9   (a target of 4 would give 25, of 1 give 4)
    args = (torch.tensor([-1.0, -3.0]), torch.tensor([-4.0, -2.0]), torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0]))
    losses, chosen, rejected = dpo_loss(*args, beta=0.25, loss_type="ipo")
    assert losses.tolist() == pytest.approx([1.0, 9.0])
    # implicit rewards 0.25 * (log pi - log pi_ref): chosen 0.25 * 1, 0.25 * -1; rejected 0.25 * -2, 0.25 * 0
    assert chosen.tolist() == pytest.approx([0.25, -0.25]) and rejected.tolist() == pytest.approx([-0.5, 0.0])

@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_dpo_loss_gradient_raises_chosen_and_lowers_rejected(loss_type):
    chosen, rejected = torch.tensor([-2.0], requires_grad=True), torch.tensor([-2.0], requires_grad=True)
    losses, _, _ = dpo_loss(chosen, rejected, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5, loss_type=loss_type)
    losses.sum().backward()
    # at h = 0: sigmoid d/d(log pi_w) = -beta * sigmoid(0) = -0.25; ipo d/d(log pi_w) = 2 * (0 - 1) = -2
    expected = -0.25 if loss_type == "sigmoid" else -2.0
    assert chosen.grad.item() == pytest.approx(expected) and rejected.grad.item() == pytest.approx(-expected)


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_a_step_raises_the_chosen_minus_rejected_log_prob(tokenizer, records, loss_type):
    dpo = tiny_dpo(tokenizer, records[:1], loss_type=loss_type, learning_rate=1e-3)

    def gap():
        with torch.no_grad():
            logps = sequence_logps(dpo.policy, *dpo._batch([0]))
        return (logps[0] - logps[1]).item()

    before = gap()
    dpo.learn(1)
    assert dpo.num_steps == 1 and gap() > before


# ------------------------------------------------------------------------------- reference log-probs
def unpadded_logp(model, prompt_ids, response_ids) -> float:
    """log pi(response | prompt) from one forward of the bare sequence, no padding."""
    ids = torch.tensor([prompt_ids + response_ids])
    logp = torch.log_softmax(model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1], dim=-1)
    return logp.gather(-1, torch.tensor(response_ids)[:, None]).sum().item()


def test_reference_log_probs_are_computed_once_and_match_unpadded_sequences(tokenizer, records):
    ref = tiny_lm(tokenizer, seed=1)
    calls = []
    ref.register_forward_hook(lambda *_: calls.append(1))
    dpo = DPO(tiny_lm(tokenizer), ref, tokenizer, records[:10], batch_size=4, device="cpu")
    assert len(calls) == 1  # 10 comparisons fit one batch of the reference pass
    dpo.learn(30)  # three epochs
    assert len(calls) == 1 and dpo.ref_logps.shape == (10, 2)
    with torch.no_grad():
        for i in (0, 7):
            for k in (0, 1):
                expected = unpadded_logp(ref, dpo.prompt_ids[i], dpo.response_ids[i][k])
                assert dpo.ref_logps[i, k].item() == pytest.approx(expected, abs=1e-4)


def separate_logps(model, tokenizer, prompts: list[str], responses: list[str]) -> torch.Tensor:
    """log pi(response | prompt) [B] of the responses alone (chosen and rejected never in one batch)."""
    pad = tokenizer.pad_token_id
    queries, query_mask = left_pad([tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts], pad)
    ids = [torch.tensor(tokenize_response(tokenizer, r)) for r in responses]
    padded = torch.nn.utils.rnn.pad_sequence(ids, batch_first=True, padding_value=pad)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones_like(r) for r in ids], batch_first=True)
    with torch.no_grad():
        return sequence_logps(model, queries, query_mask, padded, mask)


def test_reference_columns_are_chosen_then_rejected_and_swapping_the_data_swaps_them(tokenizer):
    """ref_logps[:, 0] is the chosen response's log pi_ref and [:, 1] the rejected one's; chosen and rejected differ in
    length (2 + EOS against 4 + EOS tokens), so a mix-up of the columns or of the rows of the [2B] batch shows."""
    comparisons = [{"prompt": "the soup was", "chosen": "good .", "rejected": "bad and cold ."},
                   {"prompt": "the pizza was", "chosen": "terrible and bland .", "rejected": "great"}]
    swapped = [{**c, "chosen": c["rejected"], "rejected": c["chosen"]} for c in comparisons]
    ref = tiny_lm(tokenizer, seed=1)
    prompts = [c["prompt"] for c in comparisons]
    chosen = separate_logps(ref, tokenizer, prompts, [c["chosen"] for c in comparisons])
    rejected = separate_logps(ref, tokenizer, prompts, [c["rejected"] for c in comparisons])
    assert (chosen - rejected).abs().min() > 0.1  # the two columns are told apart

    dpo = DPO(tiny_lm(tokenizer), ref, tokenizer, comparisons, beta=0.5, batch_size=2, device="cpu")
    torch.testing.assert_close(dpo.ref_logps[:, 0], chosen, atol=1e-5, rtol=0)
    torch.testing.assert_close(dpo.ref_logps[:, 1], rejected, atol=1e-5, rtol=0)
    flipped = DPO(tiny_lm(tokenizer), ref, tokenizer, swapped, beta=0.5, batch_size=2, device="cpu")
    torch.testing.assert_close(flipped.ref_logps, dpo.ref_logps.flip(1), atol=1e-5, rtol=0)

    # the margin of the first step, by hand: beta * mean(h), h = (pi_w - ref_w) - (pi_l - ref_l), the policy's
    # log-probs from the same separate passes (both agents start from tiny_lm seed 0, which differs from the reference)
    policy_chosen = separate_logps(dpo.policy, tokenizer, prompts, [c["chosen"] for c in comparisons])
    policy_rejected = separate_logps(dpo.policy, tokenizer, prompts, [c["rejected"] for c in comparisons])
    margin = 0.5 * ((policy_chosen - chosen) - (policy_rejected - rejected)).mean().item()
    assert abs(margin) > 1e-2
    stats, flipped_stats = dpo.train_step([0, 1]), flipped.train_step([0, 1])
    assert stats["rewards/margins"] == pytest.approx(margin, abs=1e-5)
    assert flipped_stats["rewards/margins"] == pytest.approx(-margin, abs=1e-5)


def test_without_a_reference_the_policy_starts_at_zero_implicit_reward(tokenizer, records):
    dpo = tiny_dpo(tokenizer, records[:6])
    with torch.no_grad():
        logps = sequence_logps(dpo.policy, *dpo._batch(list(range(6)))).view(2, -1).T
    torch.testing.assert_close(logps, dpo.ref_logps, atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------- tokenisation
def test_decoded_samples_re_tokenise_to_the_sampled_ids_and_log_probs(task, tokenizer, ref_model):
    prompts = random.Random(0).sample(task.train_prompts, 48)
    queries, query_mask = left_pad([tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts],
                                   tokenizer.pad_token_id)
    generator = torch.Generator().manual_seed(0)
    samples = sample(ref_model, queries, query_mask, task.max_new_tokens, tokenizer.eos_token_id,
                     tokenizer.pad_token_id, generator=generator)
    texts = decode_responses(tokenizer, samples)  # what the env reports: decode(skip_special_tokens).strip()
    assert samples.ended.any()
    for text, tokens, mask in zip(texts, samples.tokens, samples.mask):
        assert tokenize_response(tokenizer, text, task.max_new_tokens) == tokens[mask].tolist()
    # DPO's log pi of a decoded response is the sampler's own: the same tokens, EOS included, after the same prompt ids
    kept = [i for i, text in enumerate(texts) if text][:16:2]
    comparisons = [{"prompt": prompts[i], "chosen": texts[i], "rejected": texts[i + 1] or "good ."} for i in kept]
    dpo = DPO(ref_model, None, tokenizer, comparisons, max_new_tokens=task.max_new_tokens, device="cpu")
    sampled = (samples.logprobs * samples.mask).sum(1)
    torch.testing.assert_close(dpo.ref_logps[:, 0], sampled[kept], atol=1e-4, rtol=0)


def test_a_response_at_the_budget_gets_no_eos(tokenizer):
    assert tokenize_response(tokenizer, "good .") == [*tokenizer("good .")["input_ids"], tokenizer.eos_token_id]
    assert tokenize_response(tokenizer, "good .", max_new_tokens=2) == tokenizer("good .")["input_ids"]



def test_an_empty_response_is_the_eos_token_alone(tokenizer, records, tmp_path):
    """A policy that stops at once writes "" (the env decodes and strips its lone EOS): a valid response for DPO, from
    a list or a JSONL file. The reward model's data still refuses it (tests/test_preferences.py)."""
    empty = [{"prompt": "the soup was", "chosen": "good .", "rejected": ""},
             {"prompt": "the tea was", "chosen": "", "rejected": "bad ."}]
    eos = tokenizer.eos_token_id
    assert tokenize_response(tokenizer, "", max_new_tokens=1) == [eos]
    dpo = tiny_dpo(tokenizer, empty + records[:2])
    assert dpo.response_ids[0][1] == [eos] and dpo.response_ids[1][0] == [eos]
    with torch.no_grad():
        expected = unpadded_logp(dpo.policy, dpo.prompt_ids[0], [eos])
    assert dpo.ref_logps[0, 1].item() == pytest.approx(expected, abs=1e-4)
    path = tmp_path / "prefs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in empty))
    assert tiny_dpo(tokenizer, str(path)).response_ids == dpo.response_ids[:2]

# ----------------------------------------------------------------------------- save / load / resume
def test_resume_continues_to_the_same_total_with_the_same_parameters(tokenizer, records, tmp_path):
    comparisons = records[:10]  # batches of 4: 4, 4, 2 per epoch
    straight = tiny_dpo(tokenizer, comparisons).learn(25)
    assert (straight.num_comparisons, straight.num_steps) == (28, 8)  # epochs end at 10, 20; then 24, 28 >= 25

    first = tiny_dpo(tokenizer, comparisons).learn(7)
    assert (first.num_comparisons, first.num_steps) == (8, 2)
    first.save(tmp_path / "dpo.zip")
    resumed = DPO.load(tmp_path / "dpo.zip", comparisons, device="cpu").learn(25)
    assert (resumed.num_comparisons, resumed.num_steps) == (28, 8)
    for (name, a), b in zip(straight.policy.named_parameters(), resumed.policy.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)

    with pytest.raises(ConfigError, match="hash differs"):
        DPO.load(tmp_path / "dpo.zip", records[10:20], device="cpu")
    with pytest.raises(ConfigError, match="comparisons="):
        DPO.load(tmp_path / "dpo.zip", device="cpu").learn(30)
    with pytest.raises(MissingFileError, match="no DPO checkpoint"):
        DPO.load(tmp_path / "nothing.zip")


def test_export_writes_a_plain_hugging_face_policy(tokenizer, records, tmp_path):
    dpo = tiny_dpo(tokenizer, records[:4]).learn(4)
    dpo.export_pretrained(tmp_path / "policy")
    lm = load_model(tmp_path / "policy", "policy", "--agent")
    exported = AutoTokenizer.from_pretrained(tmp_path / "policy")
    assert exported.get_vocab() == tokenizer.get_vocab()
    # decoded text has the language's spaces, also where a continuation is decoded alone (as pipeline() does)
    ids = tokenizer("the pizza was great", add_special_tokens=False)["input_ids"]
    assert exported.decode(ids[:3]) + exported.decode(ids[3:]) == " the pizza was great"
    for a, b in zip(dpo.policy.parameters(), lm.parameters()):
        torch.testing.assert_close(a, b)


def test_non_finite_weights_stop_training_and_are_never_saved(tokenizer, records, tmp_path):
    dpo = tiny_dpo(tokenizer, records[:4])
    with torch.no_grad():
        dpo.policy.lm_head.weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="DPO step 1"):
        dpo.learn(4)
    with pytest.raises(TrainingDivergedError, match="refusing to save"):
        dpo.save(tmp_path / "dpo.zip")
    assert not (tmp_path / "dpo.zip").exists()


# ------------------------------------------------------------------------------ callbacks and logging
def test_a_function_callback_stops_training_and_sb3_checkpoints_load(tokenizer, records, tmp_path):
    dpo = tiny_dpo(tokenizer, records[:10]).learn(100, callback=lambda d: d.num_steps < 2)
    assert dpo.num_steps == 2
    dpo = tiny_dpo(tokenizer, records[:10]).learn(10, callback=[CheckpointCallback(2, str(tmp_path), name_prefix="dpo")])
    saved = DPO.load(tmp_path / "dpo_8_steps.zip", records[:10], device="cpu")  # after steps 1, 2: 8 comparisons
    assert (saved.num_steps, saved.num_comparisons) == (2, 8)


def test_tensorboard_gets_trls_keys(tokenizer, records, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tiny_dpo(tokenizer, records[:8], tensorboard_log=str(tmp_path)).learn(8, log_interval=1)
    events = EventAccumulator(str(tmp_path / "DPO_1")).Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
            "train/learning_rate"} <= tags
    assert [e.step for e in events.Scalars("train/loss")] == [4, 8]  # x axis: comparisons used


# -------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(("option", "value"), [("beta", 0.0), ("beta", float("nan")), ("loss_type", "hinge"),
                                               ("label_smoothing", 0.5), ("label_smoothing", -0.1),
                                               ("batch_size", 0), ("learning_rate", -1.0), ("max_new_tokens", 0)])
def test_bad_options_are_named(tokenizer, records, option, value):
    with pytest.raises(ConfigError, match=option):
        tiny_dpo(tokenizer, records[:2], **{option: value})


def test_bad_inputs(tokenizer, records):
    with pytest.raises(ConfigError, match="label_smoothing applies to loss_type='sigmoid'"):
        tiny_dpo(tokenizer, records[:2], loss_type="ipo", label_smoothing=0.1)
    with pytest.raises(DataError, match="no comparisons"):
        tiny_dpo(tokenizer, [])
    with pytest.raises(DataError, match="comparison 1: missing column 'rejected'"):
        tiny_dpo(tokenizer, [records[0], {"prompt": "the soup", "chosen": "good ."}])
    with pytest.raises(DataError, match="comparison 0: the prompt '' is empty"):
        tiny_dpo(tokenizer, [{**records[0], "prompt": ""}])
    long = {"prompt": "the soup was", "chosen": " ".join(["good"] * 7), "rejected": "bad ."}
    with pytest.raises(ConfigError, match=r"comparison 0: prompt \(3 tokens\) and response \(8 tokens with EOS\) need 11 "
                                          "of the policy's 10 positions"):
        DPO(tiny_lm(tokenizer, positions=10), None, tokenizer, [long], device="cpu")
    with pytest.raises(ConfigError, match="needs its tokenizer"):
        DPO(tiny_lm(tokenizer), None, None, records[:2], device="cpu")
    other_vocab = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer) + 5, n_positions=64, n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(ConfigError, match="different vocabularies"):
        DPO(tiny_lm(tokenizer), other_vocab, tokenizer, records[:2], device="cpu")
    with pytest.raises(ConfigError, match="total_comparisons"):
        tiny_dpo(tokenizer, records[:2]).learn(0)



def test_comparisons_whose_chosen_is_rejected_warn_and_cannot_be_all(tokenizer, records):
    """chosen == rejected gives h = 0 whatever the policy: no preference signal, only a diluted mean loss."""
    same = {"prompt": "the soup was", "chosen": "good .", "rejected": "good ."}
    with pytest.warns(UserWarning, match=r"comparisons: 1 of 3 comparisons have chosen == rejected"):
        tiny_dpo(tokenizer, [same, *records[:2]])
    with pytest.raises(DataError, match=r"comparisons: all 2 comparisons have chosen == rejected"):
        tiny_dpo(tokenizer, [same, {**same, "prompt": "the tea was"}])


def test_exact_duplicate_comparisons_are_dropped_and_counted(tokenizer, records, capsys):
    """As the reward-model trainer does: a file appended to twice trains once; another labeller's vote is kept."""
    other_vote = {**records[1], "labeler": "someone else"}
    dpo = tiny_dpo(tokenizer, records[:4] + records[:2] + [other_vote])
    assert dpo.comparisons == [*records[:4], other_vote] and dpo.ref_logps.shape == (5, 2)
    assert "left out 2 duplicate comparison(s)" in capsys.readouterr().out

# --------------------------------------------------------------------------------------- learning signal
def test_a_few_steps_on_the_task_preferences_raise_accuracy_and_margin(task, tokenizer, records):
    pairs = records[:32]
    dpo = DPO(task.policy_dir, None, tokenizer, pairs, beta=0.1, learning_rate=1e-3, batch_size=16,
              max_new_tokens=task.max_new_tokens, device="cpu")

    def accuracy_and_margin():
        with torch.no_grad():
            logps = sequence_logps(dpo.policy, *dpo._batch(list(range(len(pairs))))).view(2, -1)
        _, chosen, rejected = dpo_loss(logps[0], logps[1], dpo.ref_logps[:, 0], dpo.ref_logps[:, 1], dpo.beta)
        return (chosen > rejected).float().mean().item(), (chosen - rejected).mean().item()

    assert accuracy_and_margin()[1] == pytest.approx(0.0, abs=1e-3)  # the policy starts as the reference
    dpo.learn(3 * len(pairs))  # 6 steps (0.84 and 0.85 when written)
    accuracy, margin = accuracy_and_margin()
    assert accuracy > 0.7 and margin > 0.3


def test_comparisons_may_be_a_saved_datasets_directory(tokenizer, records, tmp_path):
    """``--comparisons`` (and DPO's ``comparisons=``) takes a directory written by ``Dataset.save_to_disk`` as it takes
    JSONL; rlhf-gym 0.8 refused it as "file not found"."""
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(records[:8]).save_to_disk(str(tmp_path / "prefs"))
    from_disk, from_list = tiny_dpo(tokenizer, str(tmp_path / "prefs")), tiny_dpo(tokenizer, records[:8])
    assert from_disk.comparisons == from_list.comparisons
    torch.testing.assert_close(from_disk.ref_logps, from_list.ref_logps)
    args = parse_dataclass(train.Args, "", ["--algo", "dpo", "--comparisons", str(tmp_path / "prefs")])
    assert args.comparisons == str(tmp_path / "prefs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="not a saved datasets dataset"):
        tiny_dpo(tokenizer, str(tmp_path / "empty"))
