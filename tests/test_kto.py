"""KTO (agents/kto.py): the loss and its reference point by hand, the mismatched pairs, unpaired data and its errors,
logging, save/load/resume, export, the command-line options, and a learning signal on the reviews task's preferences."""

import json
import math
import random
import re
from types import SimpleNamespace

import pytest
import test_dpo
import torch
from test_algorithm_contract import run_train
from test_data_parallel import launch

from rlhf_gym.agents import train
from rlhf_gym.agents.kto import KTO, kto_loss, kto_reference_point, mismatched_pairing
from rlhf_gym.agents.offline import sequence_logps
from rlhf_gym.agents.parallel import DataParallel
from rlhf_gym.errors import ConfigError, DataError
from rlhf_gym.preferences import unpair_preferences
from rlhf_gym.utils import load_model

one_thread, records, tiny_lm = test_dpo.one_thread, test_dpo.records, test_dpo.tiny_lm  # shared with the DPO tests
sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731

# 2 prompts x 8 comparisons: 32 distinct examples, half of them for each prompt (comparisons 0-7 and 8-15)
REPEATED_PROMPTS = [{"prompt": prompt, "chosen": f"{adverb} {good} .", "rejected": f"{adverb} {bad} ."}
                    for prompt in ("the soup was", "our waiter seemed") for adverb in ("really", "not")
                    for good, bad in (("great", "rude"), ("tasty", "bad"), ("lovely", "slow"), ("friendly", "cold"))]


def tiny_kto(tokenizer, examples, ref_model=None, **kwargs) -> KTO:
    options = {"learning_rate": 1e-2, "batch_size": 4, "device": "cpu", **kwargs}
    return KTO(tiny_lm(tokenizer), ref_model, tokenizer, examples, **options)


# ------------------------------------------------------------------------------------------- the loss
def test_kto_loss_by_hand():
    # example 0, desirable: r = -1 - -2 = 1, loss 2 * (1 - sigmoid(0.5 * (1 - 0.5))) = 2 * (1 - sigmoid(0.25))
    # example 1, undesirable: r = -3 - -2 = -1, loss 0.5 * (1 - sigmoid(0.5 * (0.5 - -1))) = 0.5 * (1 - sigmoid(0.75))
    losses, rewards = kto_loss(torch.tensor([-1.0, -3.0]), torch.tensor([-2.0, -2.0]), torch.tensor([True, False]),
                               torch.tensor(0.5), beta=0.5, desirable_weight=2.0, undesirable_weight=0.5)
    assert losses.tolist() == pytest.approx([2 * (1 - sigmoid(0.25)), 0.5 * (1 - sigmoid(0.75))])
    assert rewards.tolist() == pytest.approx([0.5, -0.5])  # beta * r


def test_kto_loss_gradient_raises_desirable_and_lowers_undesirable():
    logps = torch.tensor([-1.0, -3.0], requires_grad=True)
    losses, _ = kto_loss(logps, torch.tensor([-2.0, -2.0]), torch.tensor([True, False]), torch.tensor(0.5), beta=0.5,
                         desirable_weight=2.0, undesirable_weight=0.5)
    losses.sum().backward()
    # d/dr of w * (1 - sigmoid(beta * (r - z0))) is -w * beta * s * (1 - s), s = sigmoid(beta * (r - z0));
    # d/dr of w * (1 - sigmoid(beta * (z0 - r))) is +w * beta * s * (1 - s), s = sigmoid(beta * (z0 - r))
    assert logps.grad.tolist() == pytest.approx([-2.0 * 0.5 * sigmoid(0.25) * (1 - sigmoid(0.25)),
                                                 0.5 * 0.5 * sigmoid(0.75) * (1 - sigmoid(0.75))])
    assert logps.grad[0] < 0 < logps.grad[1]  # a step raises the desirable completion and lowers the undesirable one


def test_the_reference_point_by_hand_clamped_and_detached():
    # log pi - log pi_ref of the mismatched pairs: -1 - -2 = 1, -3 - -2 = -1, -2 - -2.5 = 0.5; mean 0.5 / 3
    mismatched = torch.tensor([-1.0, -3.0, -2.0], requires_grad=True)
    z0 = kto_reference_point(mismatched, torch.tensor([-2.0, -2.0, -2.5]))
    assert z0.item() == pytest.approx(1 / 6) and not z0.requires_grad
    logps = torch.tensor([-1.0, -1.0, -1.0], requires_grad=True)
    losses, _ = kto_loss(logps, torch.tensor([-2.0, -2.0, -2.0]), torch.tensor([True, False, True]), z0)
    losses.sum().backward()
    assert mismatched.grad is None and logps.grad.abs().min() > 0  # no gradient through z0
    # a policy below the reference on the mismatched pairs: mean -1, clamped at 0
    assert kto_reference_point(torch.tensor([-3.0, -3.0]), torch.tensor([-2.0, -2.0])).item() == 0.0
    # data-parallel (TRL): the mean of the processes' means, clamped after: (1/6 + 0.5) / 2 = 1/3; and (-1 + 0.4) / 2 < 0
    # gives 0, where clamping each process's mean first would give (0 + 0.4) / 2 = 0.2
    other = lambda value: lambda mine: torch.cat([mine, torch.tensor([value])])  # noqa: E731
    assert kto_reference_point(mismatched, torch.tensor([-2.0, -2.0, -2.5]), other(0.5)).item() == pytest.approx(1 / 3)
    assert kto_reference_point(torch.tensor([-3.0, -3.0]), torch.tensor([-2.0, -2.0]), other(0.4)).item() == 0.0


# ------------------------------------------------------------------------------------ mismatched pairs
def test_mismatched_pairs_never_share_a_prompt():
    rng = random.Random(0)
    for seed in range(30):
        # prompts repeated 1 to 6 times, the largest group at most half of the examples
        prompts = [f"p{g}" for g in range(rng.randint(2, 9)) for _ in range(rng.randint(1, 6))]
        prompts += [f"q{i}" for i in range(max(0, 2 * max(prompts.count(p) for p in prompts) - len(prompts)))]
        rng.shuffle(prompts)
        pairing = mismatched_pairing(prompts, seed)
        assert sorted(pairing) == list(range(len(prompts)))  # a permutation: every completion used once
        assert all(prompts[j] != prompts[i] for i, j in enumerate(pairing)), (seed, prompts, pairing)
    half = ["a", "a", "a", "b", "c", "d"]  # exactly half share a prompt: each of them is paired with b, c or d
    assert all(half[j] != half[i] for i, j in enumerate(mismatched_pairing(half, 0)))
    assert mismatched_pairing(half, 3) == mismatched_pairing(half, 3)  # seeded
    assert len({tuple(mismatched_pairing(half, seed)) for seed in range(10)}) > 1
    with pytest.raises(DataError, match="the prompt 'a' has 4 of the 7 examples, more than half"):
        mismatched_pairing([*half, "a"], 0)


def test_each_example_is_paired_with_a_completion_of_another_prompt(tokenizer):
    reference = tiny_lm(tokenizer, seed=1)
    kto = tiny_kto(tokenizer, REPEATED_PROMPTS, ref_model=reference, seed=5)
    prompts = [e["prompt"] for e in kto.comparisons]
    pairing = mismatched_pairing(prompts, 5)
    for i, j in enumerate(pairing):
        assert prompts[i] != prompts[j] and kto.response_ids[i] == (kto.response_ids[i][0], kto.response_ids[j][0])
    prompt = tokenizer(prompts[3], add_special_tokens=False)["input_ids"]
    with torch.no_grad():  # the reference's log-probs of the mismatched pair: example j's completion after prompt i
        expected = test_dpo.unpadded_logp(reference, prompt, kto.response_ids[pairing[3]][0])
    assert kto.ref_logps[3, 1].item() == pytest.approx(expected, abs=1e-4)
    assert tiny_kto(tokenizer, REPEATED_PROMPTS, seed=6).response_ids != kto.response_ids  # another seed, other pairs


# ----------------------------------------------------------------------------------------------- data
def test_comparisons_are_unpaired_as_trl_does():
    comparisons = [{"prompt": "the soup was", "chosen": "good .", "rejected": "bad .", "labeler": "a", "label": "preferred"},
                   {"prompt": "the tea was", "chosen": "hot .", "rejected": "cold .", "label": "tie"},
                   {"prompt": "the tea was", "completion": "fine .", "label": False}]
    assert unpair_preferences(comparisons) == [
        {"prompt": "the soup was", "labeler": "a", "completion": "good .", "label": True},
        {"prompt": "the soup was", "labeler": "a", "completion": "bad .", "label": False},
        {"prompt": "the tea was", "completion": "fine .", "label": False}]


def test_kto_trains_on_comparisons_and_unpaired_examples_from_a_list_or_a_file(tokenizer, tmp_path):
    kto = tiny_kto(tokenizer, REPEATED_PROMPTS[:3] + REPEATED_PROMPTS[8:11])
    assert kto.comparisons == unpair_preferences(REPEATED_PROMPTS[:3] + REPEATED_PROMPTS[8:11])
    assert kto.desirable.tolist() == [True, False] * 6 and kto.ref_logps.shape == (12, 2)
    path = tmp_path / "examples.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in kto.comparisons))
    assert tiny_kto(tokenizer, str(path)).response_ids == kto.response_ids
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(kto.comparisons).save_to_disk(str(tmp_path / "examples"))
    from_disk = tiny_kto(tokenizer, str(tmp_path / "examples"))
    assert from_disk.comparisons == kto.comparisons and from_disk.desirable.tolist() == kto.desirable.tolist()


def test_exact_duplicate_examples_are_left_out(tokenizer, capsys):
    kto = tiny_kto(tokenizer, REPEATED_PROMPTS[:2] + REPEATED_PROMPTS[8:10] + REPEATED_PROMPTS[:1])
    assert len(kto.comparisons) == 8 and "left out 2 duplicate example(s)" in capsys.readouterr().out


@pytest.mark.parametrize(("bad", "message"), [
    ({"prompt": "the soup was", "label": True}, "example 1: missing column 'completion'"),
    ({"prompt": "the soup was", "completion": "good ."}, "example 1: missing column 'label'"),
    ({"prompt": "the soup was", "completion": "good .", "label": "yes"},
     r"example 1: column 'label' must be true \(desirable\) or false \(undesirable\), got str 'yes'"),
    ({"prompt": "the soup was", "completion": "good .", "label": 1}, "example 1: column 'label' must be .*got int 1"),
    ({"prompt": "the soup was", "chosen": "good ."}, "example 1: missing column 'rejected'"),
    ("the soup was good .", "example 1: expected a dict"),
])
def test_bad_records_are_named(tokenizer, bad, message):
    good = {"prompt": "the tea was", "completion": "fine .", "label": True}
    with pytest.raises(DataError, match=message):
        tiny_kto(tokenizer, [good, bad])


def test_bad_data_in_a_file_is_named_by_line_and_one_prompt_cannot_be_the_majority(tokenizer, tmp_path):
    path = tmp_path / "examples.jsonl"
    path.write_text(json.dumps(REPEATED_PROMPTS[0]) + "\n" + json.dumps({"prompt": "x", "completion": "y", "label": 0}))
    with pytest.raises(DataError, match=re.escape(f"{path}:2: column 'label' must be")):
        tiny_kto(tokenizer, str(path))
    with pytest.raises(DataError, match="the prompt 'the soup was' has 8 of the 10 examples, more than half"):
        tiny_kto(tokenizer, REPEATED_PROMPTS[:4] + REPEATED_PROMPTS[8:9])
    with pytest.raises(DataError, match="no examples to train on"):
        tiny_kto(tokenizer, [{**REPEATED_PROMPTS[0], "label": "tie"}])


# -------------------------------------------------------------------------------------- steps and logs
def test_a_step_logs_trl_s_keys_and_averages_every_example(tokenizer, tmp_path):
    """rewards/chosen is the mean over the desirable examples of the logged steps (however many each step had)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # 5 desirable examples and 3 undesirable ones, 4 for each prompt: two steps of 4 cannot hold as many of each
    examples = [{"prompt": c["prompt"], "completion": c["chosen"], "label": True}
                for c in REPEATED_PROMPTS[0:3] + REPEATED_PROMPTS[8:10]] + \
        [{"prompt": c["prompt"], "completion": c["rejected"], "label": False}
         for c in REPEATED_PROMPTS[3:4] + REPEATED_PROMPTS[10:12]]
    kto = tiny_kto(tokenizer, examples, ref_model=tiny_lm(tokenizer, seed=1), tensorboard_log=str(tmp_path))
    steps = []
    step = kto.train_step
    kto.train_step = lambda indices: steps.append(step(indices)) or steps[-1]
    kto.learn(8, log_interval=2)
    scalars = EventAccumulator(str(tmp_path / "DPO_1")).Reload().Scalars
    for key in ("rewards/chosen", "rewards/rejected", "logps/chosen"):
        values = [v for s in steps for v in s[key]]
        mean_of_means = sum(sum(s[key]) / len(s[key]) for s in steps) / 2
        assert abs(sum(values) / len(values) - mean_of_means) > 1e-4  # the two means are told apart
        assert scalars(key)[0].value == pytest.approx(sum(values) / len(values), rel=1e-5)
    assert scalars("kl")[0].value == pytest.approx((steps[0]["kl"] + steps[1]["kl"]) / 2, rel=1e-5)


def test_z0_of_a_step_is_the_mean_over_the_processes(tokenizer):
    """Process 0 of two takes items 0 and 2 of the minibatch; the other process's batch mean is 5."""
    kto = tiny_kto(tokenizer, REPEATED_PROMPTS[:2] + REPEATED_PROMPTS[8:10], ref_model=tiny_lm(tokenizer, seed=1))
    with torch.no_grad():
        mismatched = sequence_logps(kto.policy, *kto._batch([3, 1])).view(2, -1)[1] - kto.ref_logps[[3, 1], 1]
    kto.parallel = DataParallel(SimpleNamespace(num_processes=2, process_index=0, device=torch.device("cpu"),
                                                gather=lambda mine: torch.cat([mine, torch.tensor([5.0])]),
                                                backward=lambda loss: loss.backward(),
                                                clip_grad_norm_=torch.nn.utils.clip_grad_norm_))
    stats = kto.train_step([3, 0, 1, 2])
    assert stats["kl"] == pytest.approx((mismatched.mean().item() + 5.0) / 2, abs=1e-5)


# ----------------------------------------------------------------------------- save / load / resume / export
def test_resume_continues_to_the_same_total_with_the_same_parameters(tokenizer, tmp_path):
    # 10 examples (4, 4 and 2 for the three prompts), batches of 4: 4, 4, 2 per epoch
    examples = [*REPEATED_PROMPTS[:2], *REPEATED_PROMPTS[8:10], {"prompt": "the tea was", "chosen": "hot .",
                                                                  "rejected": "cold ."}]
    options = {"desirable_weight": 1.5, "seed": 2}
    straight = tiny_kto(tokenizer, examples, **options).learn(25)
    assert (straight.num_comparisons, straight.num_steps) == (28, 8)
    tiny_kto(tokenizer, examples, **options).learn(7).save(tmp_path / "kto.zip")
    resumed = KTO.load(tmp_path / "kto.zip", examples, device="cpu").learn(25)
    assert (resumed.num_comparisons, resumed.num_steps, resumed.desirable_weight, resumed.seed) == (28, 8, 1.5, 2)
    for (name, a), b in zip(straight.policy.named_parameters(), resumed.policy.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    flipped = [{**e, "label": not e["label"]} for e in unpair_preferences(examples)]
    with pytest.raises(ConfigError, match=r"not the examples .* was trained on"):
        KTO.load(tmp_path / "kto.zip", flipped, device="cpu")

    resumed.export_pretrained(tmp_path / "policy")
    for a, b in zip(resumed.policy.parameters(), load_model(tmp_path / "policy", "policy", "--agent").parameters()):
        torch.testing.assert_close(a, b)


# -------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize(("option", "value"), [("beta", 0.0), ("desirable_weight", 0.0), ("undesirable_weight", -1.0)])
def test_bad_options_are_named(tokenizer, option, value):
    with pytest.raises(ConfigError, match=f"^{option} must be"):
        tiny_kto(tokenizer, REPEATED_PROMPTS[:1] + REPEATED_PROMPTS[8:9], **{option: value})


def test_the_command_line_options_of_kto():
    config = train.Args(algo="kto", dpo_beta=0.2, desirable_weight=1.33).algorithm_config()
    assert KTO.loss_kwargs(config) == {"beta": 0.2, "desirable_weight": 1.33, "undesirable_weight": 1.0}
    with pytest.raises(ConfigError, match="--undesirable-weight must be > 0"):
        train.Args(algo="kto", undesirable_weight=0.0)
    with pytest.raises(ConfigError, match="--desirable-weight: not an option of dpo"):
        train.Args(algo="dpo", desirable_weight=1.0)
    with pytest.raises(ConfigError, match="--simpo-gamma: not an option of kto"):
        train.Args(algo="kto", simpo_gamma=1.0)


# --------------------------------------------------------------------------------------- learning signal
def test_a_few_steps_on_the_task_preferences_raise_the_margin(task, tokenizer, records):
    """The comparisons unpaired: examples 2k and 2k + 1 are comparison k's chosen and rejected response."""
    kto = KTO(task.policy_dir, None, tokenizer, records[:32], learning_rate=1e-3, batch_size=16,
              max_new_tokens=task.max_new_tokens, device="cpu")
    assert kto.desirable.tolist() == [True, False] * 32

    def accuracy_and_margin():
        with torch.no_grad():
            logps = sequence_logps(kto.policy, *kto._batch(list(range(64)))).view(2, -1)[0]
        rewards = logps - kto.ref_logps[:, 0]
        return (rewards[0::2] > rewards[1::2]).float().mean().item(), (rewards[0::2] - rewards[1::2]).mean().item()

    assert accuracy_and_margin()[1] == pytest.approx(0.0, abs=1e-3)  # the policy starts as the reference
    kto.learn(3 * 64)  # 12 steps (1.0 and 6.4 nats when written)
    accuracy, margin = accuracy_and_margin()
    assert accuracy > 0.7 and margin > 1.0


def test_kto_runs_end_to_end_on_given_comparisons_and_resumes(tmp_path):
    data = tmp_path / "prefs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in REPEATED_PROMPTS) + "\n")
    run_dir = run_train(["--algo", "kto", "--comparisons", data, "--batch-size", 8, "--desirable-weight", 1.5,
                         "--checkpoint-every", 16, "--out-dir", tmp_path / "runs", "--n-eval-prompts", 8,
                         "--no-progress-bar"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["steps"], summary["comparisons"], summary["dpo_beta"]) == (4, 32, 1.0)  # one pass over 32 examples
    assert json.loads((run_dir / "args.json").read_text())["algorithm"]["desirable_weight"] == 1.5
    (run_dir / "summary.json").unlink()
    assert run_train(["--resume", run_dir / "checkpoints" / "agent_00000016_comparisons.zip", "--no-progress-bar"]) == run_dir
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4


@pytest.mark.slow
def test_kto_under_accelerate_launch(tmp_path):
    """Two processes: each takes half of every minibatch, and z0 is the mean of their batch means (a collective call)."""
    data = tmp_path / "prefs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in REPEATED_PROMPTS) + "\n")
    launch("scripts/train_agent.py", "--algo", "kto", "--comparisons", str(data), "--batch-size", "8",
           "--n-eval-prompts", "16", "--no-progress-bar", "--out-dir", str(tmp_path / "runs"))
    (run,) = list((tmp_path / "runs").iterdir())
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
    assert (run / "policy" / "config.json").is_file()
