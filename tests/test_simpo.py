"""SimPO (agents/simpo.py): the loss by hand, its gradient and length normalisation, no reference pass, save/load/resume,
export, the command-line options, and a learning signal on the reviews task's preferences."""

import json
import math

import pytest
import test_dpo
import torch
from helpers import write_word_comparisons
from test_algorithm_contract import run_train

from rlhf_gym.agents import train
from rlhf_gym.agents.offline import sequence_logps
from rlhf_gym.agents.simpo import SimPO, simpo_loss
from rlhf_gym.errors import ConfigError
from rlhf_gym.utils import load_model

one_thread, records, tiny_lm = test_dpo.one_thread, test_dpo.records, test_dpo.tiny_lm  # shared with the DPO tests
softplus = lambda x: math.log1p(math.exp(x))  # -log sigmoid(z) = softplus(-z)  # noqa: E731


def tiny_simpo(tokenizer, comparisons, **kwargs) -> SimPO:
    options = {"learning_rate": 1e-2, "batch_size": 4, "device": "cpu", **kwargs}
    return SimPO(tiny_lm(tokenizer), None, tokenizer, comparisons, **options)


# ------------------------------------------------------------------------------------------- the loss
def test_simpo_loss_by_hand():
    # pair 0: chosen -2 over 4 tokens (mean -0.5), rejected -6 over 3 (mean -2); beta 2: rewards -1 and -4
    #         logit -1 - (-4) - gamma 1 = 2, loss softplus(-2)
    # pair 1: chosen -3 over 2 tokens (mean -1.5), rejected -2 over 4 (mean -0.5); rewards -3 and -1
    #         logit -3 - (-1) - 1 = -3, loss softplus(3)
    losses, chosen, rejected = simpo_loss(torch.tensor([-2.0, -3.0]), torch.tensor([-6.0, -2.0]), torch.tensor([4, 2]),
                                          torch.tensor([3, 4]), beta=2.0, gamma=1.0)
    assert losses.tolist() == pytest.approx([softplus(-2.0), softplus(3.0)])
    assert chosen.tolist() == pytest.approx([-1.0, -3.0]) and rejected.tolist() == pytest.approx([-4.0, -1.0])
    # TRL's CPOTrainer(loss_type="simpo"): -log sigmoid(beta * (mean_w - mean_l - gamma / beta)), the same numbers
    trl = [-math.log(1 / (1 + math.exp(-2.0 * (won - lost - 1.0 / 2.0)))) for won, lost in ((-0.5, -2.0), (-1.5, -0.5))]
    assert losses.tolist() == pytest.approx(trl)


def test_simpo_loss_gradient_raises_chosen_and_lowers_rejected():
    chosen, rejected = torch.tensor([-4.0], requires_grad=True), torch.tensor([-4.0], requires_grad=True)
    losses, _, _ = simpo_loss(chosen, rejected, torch.tensor([4]), torch.tensor([2]), beta=2.0, gamma=1.0)
    losses.sum().backward()
    # rewards 2 * -4 / 4 = -2 and 2 * -4 / 2 = -4, logit z = -2 + 4 - 1 = 1; d loss / dz = -sigmoid(-z)
    # d z / d log pi(y_w) = beta / |y_w| = 0.5, d z / d log pi(y_l) = -beta / |y_l| = -1
    slope = -1 / (1 + math.exp(1.0))
    assert chosen.grad.item() == pytest.approx(0.5 * slope) and rejected.grad.item() == pytest.approx(-1.0 * slope)
    assert chosen.grad.item() < 0 < rejected.grad.item()  # a step raises the chosen response and lowers the rejected


def test_the_reward_is_the_mean_token_log_prob_so_a_doubled_response_keeps_it():
    # -1.5 nats per token over 4 tokens and over 8: the same reward and loss, where summed log-probs would double
    losses, chosen, _ = simpo_loss(torch.tensor([-6.0, -12.0]), torch.tensor([-8.0, -8.0]), torch.tensor([4, 8]),
                                   torch.tensor([4, 4]), beta=2.0, gamma=0.5)
    assert chosen[0].item() == pytest.approx(-3.0) and chosen[1].item() == pytest.approx(chosen[0].item())
    assert losses[1].item() == pytest.approx(losses[0].item())


def test_lengths_count_the_eos_and_each_pair_reads_its_own(tokenizer):
    """|y| is the number of log-probs summed: the words and the EOS that ended them (none when the budget cut the
    response); chosen and rejected differ in length, so swapped columns or rows would show in the step's rewards."""
    comparisons = [{"prompt": "the soup was", "chosen": "good .", "rejected": "bad and cold ."},
                   {"prompt": "the pizza was", "chosen": "terrible and bland .", "rejected": "great"}]
    simpo = tiny_simpo(tokenizer, comparisons, beta=2.0, batch_size=2)
    assert simpo.response_lengths.tolist() == [[3, 5], [5, 2]]
    # at a budget of 2 tokens a response of 2 or more was cut there (no EOS); "great" ended with its EOS
    assert tiny_simpo(tokenizer, comparisons, max_new_tokens=2).response_lengths.tolist() == [[2, 4], [4, 2]]
    with torch.no_grad():
        logps = sequence_logps(simpo.policy, *simpo._batch([0, 1])).view(2, -1)
    chosen, rejected = 2.0 * logps[0] / torch.tensor([3, 5]), 2.0 * logps[1] / torch.tensor([5, 2])
    stats = simpo.train_step([0, 1])
    assert stats["rewards/chosen"] == pytest.approx(chosen.mean().item(), abs=1e-5)
    assert stats["rewards/rejected"] == pytest.approx(rejected.mean().item(), abs=1e-5)
    assert stats["rewards/margins"] == pytest.approx((chosen - rejected).mean().item(), abs=1e-5)


def test_simpo_runs_no_reference_pass_and_saves_none(tokenizer, records, tmp_path):
    reference = tiny_lm(tokenizer, seed=1)
    calls = []
    reference.register_forward_hook(lambda *_: calls.append(1))
    simpo = SimPO(tiny_lm(tokenizer), reference, tokenizer, records[:8], batch_size=4, device="cpu").learn(8)
    assert calls == [] and simpo.ref_logps is None
    simpo.save(tmp_path / "simpo.zip")
    loaded = SimPO.load(tmp_path / "simpo.zip", records[:8], device="cpu")
    assert loaded.ref_logps is None and (loaded.num_steps, loaded.beta, loaded.gamma) == (2, 2.0, 1.0)


# ----------------------------------------------------------------------------- save / load / resume / export
def test_resume_continues_to_the_same_total_with_the_same_parameters(tokenizer, records, tmp_path):
    comparisons = records[:10]  # batches of 4: 4, 4, 2 per epoch
    straight = tiny_simpo(tokenizer, comparisons, gamma=0.5).learn(25)
    assert (straight.num_comparisons, straight.num_steps) == (28, 8)
    first = tiny_simpo(tokenizer, comparisons, gamma=0.5).learn(7)
    first.save(tmp_path / "simpo.zip")
    resumed = SimPO.load(tmp_path / "simpo.zip", comparisons, device="cpu").learn(25)
    assert (resumed.num_comparisons, resumed.num_steps, resumed.gamma) == (28, 8, 0.5)
    for (name, a), b in zip(straight.policy.named_parameters(), resumed.policy.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)
    with pytest.raises(ConfigError, match="hash differs"):
        SimPO.load(tmp_path / "simpo.zip", records[10:20], device="cpu")

    resumed.export_pretrained(tmp_path / "policy")
    for a, b in zip(resumed.policy.parameters(), load_model(tmp_path / "policy", "policy", "--agent").parameters()):
        torch.testing.assert_close(a, b)


# -------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize(("option", "value"), [("beta", 0.0), ("gamma", -0.1), ("gamma", float("nan"))])
def test_bad_options_are_named(tokenizer, records, option, value):
    with pytest.raises(ConfigError, match=f"^{option} must be"):
        tiny_simpo(tokenizer, records[:2], **{option: value})


def test_the_command_line_options_of_simpo():
    config = train.Args(algo="simpo", dpo_beta=2.5, simpo_gamma=1.25).algorithm_config()
    assert (config.dpo_beta, config.simpo_gamma, config.learning_rate, config.batch_size) == (2.5, 1.25, 2e-4, 64)
    assert SimPO.loss_kwargs(config) == {"beta": 2.5, "gamma": 1.25}
    with pytest.raises(ConfigError, match="--simpo-gamma must be >= 0"):
        train.Args(algo="simpo", simpo_gamma=-1.0)
    with pytest.raises(ConfigError, match="--simpo-gamma: not an option of dpo"):
        train.Args(algo="dpo", simpo_gamma=1.0)
    with pytest.raises(ConfigError, match="--label-smoothing: not an option of simpo"):
        train.Args(algo="simpo", label_smoothing=0.1)


# --------------------------------------------------------------------------------------- learning signal
def test_a_few_steps_on_the_task_preferences_raise_accuracy_and_margin(task, tokenizer, records):
    pairs = records[:32]
    simpo = SimPO(task.policy_dir, None, tokenizer, pairs, learning_rate=1e-3, batch_size=16,
                  max_new_tokens=task.max_new_tokens, device="cpu")

    def accuracy_and_margin():
        with torch.no_grad():
            logps = sequence_logps(simpo.policy, *simpo._batch(list(range(len(pairs))))).view(2, -1)
        _, chosen, rejected = simpo_loss(logps[0], logps[1], *simpo.pair_inputs(list(range(len(pairs)))), simpo.beta)
        return (chosen > rejected).float().mean().item(), (chosen - rejected).mean().item()

    before = accuracy_and_margin()  # 0.69 and 0.27 for the SFT policy
    simpo.learn(3 * len(pairs))  # 6 steps (0.94 and 1.58 when written)
    accuracy, margin = accuracy_and_margin()
    assert accuracy > before[0] + 0.15 and margin > before[1] + 0.8


def test_simpo_runs_end_to_end_on_given_comparisons_and_resumes(tmp_path):
    data = write_word_comparisons(tmp_path / "prefs.jsonl")
    run_dir = run_train(["--algo", "simpo", "--comparisons", data, "--batch-size", 4, "--simpo-gamma", 0.5,
                         "--checkpoint-every", 8, "--out-dir", tmp_path / "runs", "--n-eval-prompts", 8,
                         "--no-progress-bar"])
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (summary["steps"], summary["comparisons"], summary["dpo_beta"], summary["simpo_gamma"]) == (4, 16, 2.0, 0.5)
    assert (run_dir / "policy" / "config.json").exists()
    (run_dir / "summary.json").unlink()
    assert run_train(["--resume", run_dir / "checkpoints" / "agent_00000008_comparisons.zip", "--no-progress-bar"]) == run_dir
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 4
