"""Pinned maths of the newer algorithms: the DPO family, RLOO, GRPO, the critic-free base, the data-parallel reductions
and LoRA's choices.

Each expected value is worked out by hand in a comment (issue 30: these tests kill the mutants that the older tests let
survive; CONTRIBUTING.md, "Mutation testing"). Tiny tensors and fakes only: no model is trained here.
"""

import copy
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

from rlhf_gym.agents import RLHFVecEnv
from rlhf_gym.agents.buffer import SequenceSamples
from rlhf_gym.agents.critic_free import group_view
from rlhf_gym.agents.dpo import CDPO, DPO, IPO, CDPOConfig, DPOConfig, IPOConfig, dpo_loss, sequence_logps, tokenize_response
from rlhf_gym.agents.grpo import GRPO
from rlhf_gym.agents.lora import (AdaptersDisabled, LoraSettings, adapts_tied_head, builds_on_reference, linear_layers,
                                  lora_base, target_modules)
from rlhf_gym.agents.parallel import DataParallel, ProcessGroupKLController
from rlhf_gym.agents.rloo import RLOO
from rlhf_gym.errors import ConfigError, TrainingDivergedError
from rlhf_gym.generation import left_pad
from rlhf_gym.gpt2 import gpt2_config
from rlhf_gym.preferences import load_preferences


# ----------------------------------------------------------------------------------------------- DPO family
def test_dpo_loss_defaults_to_trl_s_beta_and_the_sigmoid_loss():
    # h = (-1 - -2) - (-3 - -2) = 2 at TRL's default beta 0.1: -log sigmoid(0.2), implicit rewards 0.1 and -0.1
    losses, chosen, rejected = dpo_loss(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]),
                                        torch.tensor([-2.0]))
    assert losses.item() == pytest.approx(math.log1p(math.exp(-0.2)))
    assert chosen.item() == pytest.approx(0.1) and rejected.item() == pytest.approx(-0.1)


def test_each_dpo_variant_takes_its_loss_settings_from_its_config():
    assert DPO.loss_kwargs(DPOConfig(dpo_beta=0.3, label_smoothing=0.2)) == {"beta": 0.3, "label_smoothing": 0.2}
    assert CDPO.loss_kwargs(CDPOConfig(dpo_beta=0.7)) == {"beta": 0.7, "label_smoothing": 0.1}
    assert IPO.loss_kwargs(IPOConfig(dpo_beta=0.25)) == {"beta": 0.25}  # IPO has no label smoothing to pass on


# ------------------------------------------------------------------------------------- data-parallel reductions
class FakeAccelerator(SimpleNamespace):
    """Process ``process_index`` of ``num_processes``; the other processes' numbers are ``others`` (their sum)."""

    def __init__(self, num_processes=2, process_index=0, others=None):
        super().__init__(num_processes=num_processes, process_index=process_index, device=torch.device("cpu"),
                         others=others, reduced=[])

    def reduce(self, tensor, reduction):
        assert reduction == "sum"
        self.reduced.append(tensor)
        return tensor + (0 if self.others is None else self.others.to(tensor.dtype))


class RecordingController:
    beta = 0.1

    def __init__(self):
        self.updates = []

    def update(self, current_kl, n_samples):
        self.updates.append((current_kl, n_samples))


class InPlaceAccelerator(FakeAccelerator):
    """Reduces in place, as ``torch.distributed.all_reduce`` does, and gathers only contiguous tensors (as NCCL)."""

    def reduce(self, tensor, reduction):
        assert reduction == "sum"
        return tensor.add_(self.others)

    def gather(self, tensor):
        assert tensor.is_contiguous()
        return torch.cat([tensor, self.others.view(-1, *tensor.shape[1:])])


def test_sum_and_gather_leave_the_caller_s_tensor_alone():
    parallel = DataParallel(InPlaceAccelerator(others=torch.tensor([10.0, 20.0])))
    mine = torch.tensor([1.0, 2.0])
    assert parallel.sum(mine).tolist() == [11.0, 22.0] and mine.tolist() == [1.0, 2.0]  # reduced on a copy
    columns = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).T  # not contiguous: gathered from a contiguous copy
    parallel = DataParallel(InPlaceAccelerator(others=torch.tensor([[5.0, 6.0], [7.0, 8.0]])))
    assert parallel.gather(columns).tolist() == [[1.0, 3.0], [2.0, 4.0], [5.0, 6.0], [7.0, 8.0]]


def test_mean_over_processes_weighs_every_value_alike_in_float64():
    # the other process holds one value, 4 (its sum 4, its count 1)
    parallel = DataParallel(FakeAccelerator(others=torch.tensor([4.0, 1.0], dtype=torch.float64)))
    assert parallel.mean([1.0, 2.0]) == 7 / 3  # (1 + 2 + 4) / 3, not the mean of the means (1.5 + 4) / 2
    assert parallel.mean([]) == 4.0  # a process with no values still takes part
    assert parallel.mean(torch.tensor([1.0, 2.0]).numpy()) == 7 / 3
    nobody = DataParallel(FakeAccelerator(others=torch.tensor([0.0, 0.0], dtype=torch.float64)))
    assert math.isnan(nobody.mean([]))
    assert nobody.mean([100_000_001.0, 100_000_002.0]) == 100_000_001.5  # float32 would round these to 1e8
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy "Mean of empty slice" warning either
        assert math.isnan(DataParallel().mean([]))
    # float32 values (torch's) are averaged in float64: (1e8 + 1) / 2 is 50000000.5, which float32 rounds to 5e7
    assert DataParallel().mean(np.array([1e8, 1.0], dtype=np.float32)) == 50_000_000.5
    assert DataParallel().process_seed(None) is None and DataParallel(FakeAccelerator(2, 1)).process_seed(None) is None


def test_a_share_is_a_whole_number():
    share = DataParallel(FakeAccelerator(2, 0)).share(64, "--n-envs")
    assert share == 32 and isinstance(share, int)  # a size: tensors and slices need an int


def test_own_part_is_this_process_s_rows_of_the_gathered_tensor():
    gathered = torch.arange(6)
    assert DataParallel(FakeAccelerator(3, 1)).own_part(gathered).tolist() == [2, 3]  # 2 rows each, process 1's
    assert DataParallel(FakeAccelerator(2, 0)).own_part(gathered).tolist() == [0, 1, 2]
    assert DataParallel(FakeAccelerator(2, 1)).own_part(gathered).tolist() == [3, 4, 5]


def test_the_kl_controller_gets_the_mean_kl_in_float64_and_the_total_count():
    controller = RecordingController()
    held = ProcessGroupKLController(controller, DataParallel(FakeAccelerator(others=torch.tensor([0.0, 0.0]))))
    held.update(1 / 3, 3)  # a sum of exactly 1.0 over 3 responses: 1.0 / 3 in float64 is 1/3 (float32 is 0.33333334)
    held.synchronise()
    assert controller.updates == [(1 / 3, 3)]


def test_the_kl_controller_applies_a_single_response_and_forgets_what_it_applied():
    controller = RecordingController()
    held = ProcessGroupKLController(controller, DataParallel(FakeAccelerator(others=torch.tensor([0.0, 0.0]))))
    held.update(2.0, 1)  # one response over all processes is still an update
    held.synchronise()
    held.synchronise()  # nothing held since: no update
    held.update(0.5, 1)  # only this one counts now (not 2.0 + 0.5)
    held.synchronise()
    assert controller.updates == [(2.0, 1), (0.5, 1)]
    # the other process's responses count too: (0.5 * 2 + 3.0) / (2 + 2) = 1.0 over 4
    held = ProcessGroupKLController(controller, DataParallel(FakeAccelerator(others=torch.tensor([3.0, 2.0]))))
    held.update(0.5, 2)
    held.synchronise()
    assert controller.updates[-1] == (1.0, 4)


# ------------------------------------------------------------------------------------------ the DPO shuffle
def bare_optimizer(n: int, batch_size: int, seed: int) -> DPO:
    """A DPO with only what ``_next_indices`` reads: ``n`` comparisons, the batch size, the seed, the counters."""
    agent = DPO.__new__(DPO)
    agent.comparisons, agent.batch_size, agent.seed, agent.num_comparisons, agent._epoch_order = [{}] * n, batch_size, \
        seed, 0, None
    return agent


def test_each_epoch_takes_its_own_permutation_of_the_seed():
    generator = torch.Generator().manual_seed(3)
    first, second = torch.randperm(6, generator=generator).tolist(), torch.randperm(6, generator=generator).tolist()
    assert first != second
    agent = bare_optimizer(6, 4, seed=3)
    assert agent._next_indices() == first[:4]  # epoch 0: the seed's first permutation
    agent.num_comparisons = 4
    assert agent._next_indices() == first[4:]  # a batch ends with its epoch
    agent.num_comparisons = 6
    assert agent._next_indices() == second[:4]  # epoch 1: the second permutation, not the first again
    agent.num_comparisons = 10
    assert agent._next_indices() == second[4:]
    assert bare_optimizer(6, 4, seed=3)._next_indices() == first[:4]  # a resumed run draws the same


# ------------------------------------------------------------------------------------------------- RLOO loss
def rloo_samples(old_logprobs, advantages, mask):
    b, t = old_logprobs.shape
    zeros = torch.zeros(b, t)
    return SequenceSamples(torch.zeros(b, 1, dtype=torch.long), torch.ones(b, 1, dtype=torch.long), zeros.long(), mask,
                           old_logprobs, zeros, advantages[:, None] * mask, zeros, None, None)


def rloo_loss(old, new, advantages, mask, clip_range):
    # RLOO.policy_loss reads nothing of the agent: a bare instance is enough
    return RLOO.__new__(RLOO).policy_loss(rloo_samples(old, advantages, mask), new, clip_range)


def test_rloo_reads_a_one_token_response_s_advantage_and_clips_the_ratio_from_below():
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    old = torch.tensor([[-1.0, 0.0], [-1.0, -1.0]])
    # response 0 (one token): log ratio log 0.5, A = -1 -> min(0.5 * -1, clamp(0.5, 0.8, 1.2) * -1) = -0.8
    # response 1 (two tokens): log ratio 0, A = 2 -> 2;   loss = -mean(-0.8, 2) = -0.6
    new = old + torch.tensor([[math.log(0.5), 0.0], [0.0, 0.0]])
    loss, stats = rloo_loss(old, new, torch.tensor([-1.0, 2.0]), mask, 0.2)
    assert loss.item() == pytest.approx(-0.6, abs=1e-6)
    # approx KL per response: ratio - 1 - log ratio = 0.5 - 1 - log 0.5 and 0
    assert set(stats) == {"policy_gradient_loss", "approx_kl", "clip_fraction"}
    assert stats["policy_gradient_loss"] == pytest.approx(-0.6, abs=1e-6)
    assert stats["approx_kl"] == pytest.approx((0.5 - 1 - math.log(0.5)) / 2, abs=1e-6)
    assert stats["clip_fraction"] == 0.5


def test_a_ratio_on_the_clip_edge_is_not_clipped():
    mask, old = torch.ones(1, 2), torch.tensor([[-1.0, -2.0]])
    new = old + torch.tensor([[0.0, math.log(1.25)]])  # ratio exactly 1.25 (float32), on the edge of clip 0.25
    loss, stats = rloo_loss(old, new, torch.tensor([1.0]), mask, 0.25)
    assert loss.item() == pytest.approx(-1.25) and stats["clip_fraction"] == 0.0


def test_rloo_standardises_its_advantages_over_the_rollout_when_asked():
    agent = RLOO.__new__(RLOO)
    agent.group_size, agent.parallel, agent.standardize_advantages = 2, DataParallel(), True
    # leave-one-out advantages of (1, 3 | 2, 2): (-2, 2 | 0, 0); mean 0, unbiased std sqrt(8/3)
    expected = torch.tensor([-2.0, 2.0, 0.0, 0.0]) / (math.sqrt(8 / 3) + 1e-4)
    torch.testing.assert_close(agent.group_advantages(torch.tensor([1.0, 3.0, 2.0, 2.0])), expected)
    # (5, 9 | 6, 8): (-4, 4 | -2, 2); mean 0, std sqrt(40/3)
    expected = torch.tensor([-4.0, 4.0, -2.0, 2.0]) / (math.sqrt(40 / 3) + 1e-4)
    torch.testing.assert_close(agent.group_advantages(torch.tensor([5.0, 9.0, 6.0, 8.0])), expected)
    # a rollout of leave-one-out advantages with a non-zero mean cannot happen (each group's sum to 0), so the mean is
    # checked on the standardising alone: all-equal rewards give 0 / (0 + 1e-4) = 0
    torch.testing.assert_close(agent.group_advantages(torch.ones(4)), torch.zeros(4))
    agent.standardize_advantages = False
    torch.testing.assert_close(agent.group_advantages(torch.tensor([1.0, 3.0, 2.0, 2.0])), torch.tensor([-2.0, 2.0, 0, 0]))


def test_dpo_pair_losses_use_the_agent_s_label_smoothing():
    agent = DPO.__new__(DPO)
    agent.beta, agent.loss_type, agent.label_smoothing = 0.5, "sigmoid", 0.2
    # h = (-1 - -2) - (-3 - -2) = 2, beta h = 1: 0.8 * softplus(-1) + 0.2 * softplus(1)
    losses, chosen, rejected = agent.pair_losses(torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]),
                                                 torch.tensor([-2.0]))
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731
    assert losses.item() == pytest.approx(0.8 * softplus(-1.0) + 0.2 * softplus(1.0))
    assert chosen.item() == pytest.approx(0.5) and rejected.item() == pytest.approx(-0.5)


def test_a_non_finite_dpo_loss_or_gradient_stops_the_step_with_the_api_s_hint(tokenizer, task):
    torch.manual_seed(0)
    records = load_preferences(task.artifacts_dir / "preferences.jsonl")[:4]
    agent = DPO(GPT2LMHeadModel(gpt2_config(tokenizer, 16, 1, heads=2, positions=64)), None, tokenizer, records,
                learning_rate=1e-2, batch_size=4, device="cpu")
    weights = [p.detach().clone() for p in agent.policy.parameters()]
    agent.pair_losses = lambda *logps: (torch.full((4,), float("nan")), torch.zeros(4), torch.zeros(4))
    with pytest.raises(TrainingDivergedError, match=r"^the loss became nan at DPO step 1 \(0 comparisons done\): .*"
                                                    r"\(try a lower learning_rate\)$"):
        agent.train_step([0, 1, 2, 3])

    def infinite_slope(chosen, rejected, ref_chosen, ref_rejected):
        # a finite loss (0) whose gradient is not: d sqrt(x) / dx at x = 0
        return (chosen - chosen.detach()).sqrt(), torch.zeros(4), torch.zeros(4)

    agent.pair_losses = infinite_slope
    with pytest.raises(TrainingDivergedError, match=r"^the gradient norm became (nan|inf) at DPO step 1: .*"
                                                    r"\(try a lower learning_rate\)$"):
        agent.train_step([0, 1, 2, 3])
    assert all(torch.equal(p, w) for p, w in zip(agent.policy.parameters(), weights))  # no update reached the weights
    assert agent.num_steps == 0 and agent.num_comparisons == 0


# ------------------------------------------------------------------------------------------------- GRPO loss
def bare_grpo(kl_coef=0.5, loss_type="dapo", rollout_tokens=6, scale_rewards="group", group_size=2) -> GRPO:
    """A GRPO with only what its loss and advantages read (no env, no policy)."""
    agent = GRPO.__new__(GRPO)
    agent.kl_coef, agent.loss_type, agent.scale_rewards, agent.group_size = kl_coef, loss_type, scale_rewards, group_size
    agent.parallel = DataParallel()
    agent.rollout_buffer = SimpleNamespace(response_mask=torch.arange(8).view(2, 4) < rollout_tokens)
    return agent


def grpo_case():
    """Two responses (2 tokens and 1), the second's padding holding junk that must not count."""
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    old = torch.tensor([[-1.0, -1.0, 0.0], [-2.0, 0.0, 0.0]])
    ref = torch.tensor([[-1.0, -1.5, 0.0], [-2.0, 0.0, 0.0]])
    new = old + torch.tensor([[math.log(1.5), 0.0, 7.0], [math.log(0.5), 0.0, 3.0]])
    batch = SequenceSamples(torch.zeros(2, 1, dtype=torch.long), torch.ones(2, 1, dtype=torch.long),
                            torch.zeros(2, 3, dtype=torch.long), mask, old, torch.zeros(2, 3),
                            torch.tensor([1.0, -2.0])[:, None] * mask, torch.zeros(2, 3), None, ref)
    return batch, new


# by hand, clip 0.2: token (0, 0) ratio 1.5, A = 1 -> -min(1.5, 1.2) = -1.2; token (0, 1) ratio 1 -> -1;
# token (1, 0) ratio 0.5, A = -2 -> -min(-1, 0.8 * -2) = 1.6. k3 with d = log pi_ref - log pi: d = -log 1.5 -> 2/3 +
# log 1.5 - 1; d = -0.5 -> e^-0.5 - 0.5; d = log 2 -> 1 - log 2
SURROGATE = (-1.2, -1.0, 1.6)
K3 = (2 / 3 + math.log(1.5) - 1, math.exp(-0.5) - 0.5, 1 - math.log(2))


def test_grpo_loss_by_hand_over_the_rollout_s_tokens_or_per_response():
    batch, new = grpo_case()
    per_token = [s + 0.5 * k for s, k in zip(SURROGATE, K3)]
    loss, stats = bare_grpo(rollout_tokens=6).policy_loss(batch, new, 0.2)
    assert loss.item() == pytest.approx(sum(per_token) / 6, rel=1e-5)  # "dapo": over the rollout's 6 tokens
    assert bare_grpo(rollout_tokens=0).policy_loss(batch, new, 0.2)[0].item() == pytest.approx(sum(per_token), rel=1e-5)
    loss, _ = bare_grpo(loss_type="grpo").policy_loss(batch, new, 0.2)
    assert loss.item() == pytest.approx(((per_token[0] + per_token[1]) / 2 + per_token[2]) / 2, rel=1e-5)
    loss, _ = bare_grpo(kl_coef=0.0).policy_loss(batch, new, 0.2)
    assert loss.item() == pytest.approx(sum(SURROGATE) / 6, rel=1e-5)
    # the logged numbers are plain means over the minibatch's 3 response tokens
    assert set(stats) == {"policy_gradient_loss", "kl", "approx_kl", "clip_fraction"}
    assert stats["policy_gradient_loss"] == pytest.approx(sum(SURROGATE) / 3, rel=1e-5)
    assert stats["kl"] == pytest.approx(sum(K3) / 3, rel=1e-5)
    # ratio - 1 - log ratio: 0.5 - log 1.5, 0, -0.5 + log 2
    assert stats["approx_kl"] == pytest.approx((0.5 - math.log(1.5) - 0.5 + math.log(2)) / 3, rel=1e-5)
    assert stats["clip_fraction"] == pytest.approx(2 / 3)


def test_grpo_gradient_is_the_clipped_surrogate_plus_the_kl_term():
    batch, new = grpo_case()
    new = new.requires_grad_(True)
    loss, _ = bare_grpo(rollout_tokens=6).policy_loss(batch, new, 0.2)
    loss.backward()
    # token (0, 1): ratio 1 inside the clip, d(-A rho)/d log pi = -1; d k3 / d log pi = 1 - e^d = 1 - e^-0.5;
    # tokens (0, 0) and (1, 0) are clipped: only the KL term's 1 - e^d; padding: 0. All over the 6 rollout tokens
    expected = torch.tensor([[0.5 * (1 - 1 / 1.5), -1 + 0.5 * (1 - math.exp(-0.5)), 0.0], [0.5 * (1 - 2.0), 0.0, 0.0]]) / 6
    torch.testing.assert_close(new.grad, expected)


def test_a_grpo_ratio_on_the_clip_edge_is_not_clipped():
    batch, _ = grpo_case()
    new = batch.old_logprobs + torch.tensor([[math.log(1.25), 0.0, 0.0], [0.0, 0.0, 0.0]])  # 1.25 exactly in float32
    assert bare_grpo().policy_loss(batch, new, 0.25)[1]["clip_fraction"] == 0.0


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_group_advantages_follow_scale_rewards(scale):
    rewards = torch.tensor([1.0, 3.0, 2.0, 6.0])
    # centred (-1, 1 | -2, 2); group stds sqrt(2) and sqrt(8); the rollout's std sqrt(59/12 - ... ) = rewards.std()
    scales = {"group": torch.tensor([2 ** 0.5, 2 ** 0.5, 8 ** 0.5, 8 ** 0.5]) + 1e-4, "batch": rewards.std() + 1e-4,
              "none": torch.tensor(1.0)}
    expected = torch.tensor([-1.0, 1.0, -2.0, 2.0]) / scales[scale]
    torch.testing.assert_close(bare_grpo(scale_rewards=scale).group_advantages(rewards), expected)


# ------------------------------------------------------------------------------------------------ a DPO step
def test_a_dpo_step_reports_trl_s_statistics_by_hand(tokenizer, task):
    torch.manual_seed(0)
    records = load_preferences(task.artifacts_dir / "preferences.jsonl")[:6]
    agent = DPO(GPT2LMHeadModel(gpt2_config(tokenizer, 16, 1, heads=2, positions=64)), None, tokenizer, records,
                learning_rate=1e-2, batch_size=4, device="cpu")
    agent.ref_logps = torch.arange(12.0).view(6, 2)  # distinct reference columns: (chosen, rejected) per comparison
    indices = [4, 1, 0, 3]
    before = copy.deepcopy(agent.policy)
    logps = sequence_logps(before, *agent._batch(indices)).view(2, -1)  # [chosen; rejected]
    (logps[0].sum() / 4).backward()  # the stub's loss below has this gradient
    grad_norm = torch.sqrt(sum((p.grad ** 2).sum() for p in before.parameters() if p.grad is not None))
    seen = []

    def stub(chosen, rejected, ref_chosen, ref_rejected):
        seen.append((chosen.detach(), rejected.detach(), ref_chosen, ref_rejected))
        # losses 1, 2, 3, 6 (sum 12) with the gradient of the chosen log-probs; implicit rewards given, one pair tied
        return (chosen - chosen.detach() + torch.tensor([1.0, 2.0, 3.0, 6.0]), torch.tensor([0.5, -1.0, 2.0, 0.0]),
                torch.tensor([0.0, 0.0, 3.0, 0.0]))

    agent.pair_losses = stub
    stats = agent.train_step(indices)
    chosen, rejected, ref_chosen, ref_rejected = seen[0]
    torch.testing.assert_close(chosen, logps[0].detach())
    torch.testing.assert_close(rejected, logps[1].detach())
    assert ref_chosen.tolist() == [8.0, 2.0, 0.0, 6.0] and ref_rejected.tolist() == [9.0, 3.0, 1.0, 7.0]
    assert stats == pytest.approx({
        "train/loss": 12 / 4, "train/grad_norm": grad_norm.item(),
        "rewards/chosen": 1.5 / 4, "rewards/rejected": 3.0 / 4,
        "rewards/accuracies": 0.25,  # 0.5 > 0 only: not -1 > 0, 2 > 3, nor the tie 0 > 0
        "rewards/margins": (0.5 - 1.0 - 1.0 + 0.0) / 4,
        "logps/chosen": logps[0].mean().item(), "logps/rejected": logps[1].mean().item()}, rel=1e-5)
    assert agent.num_comparisons == 4 and agent.num_steps == 1
    assert not all(torch.equal(p, q) for p, q in zip(agent.policy.parameters(), before.parameters()))  # it stepped
    agent.pair_losses = lambda chosen, *rest: (chosen - chosen.detach(), torch.zeros(2), torch.zeros(2))
    agent.train_step([2, 5])
    assert agent.num_comparisons == 6 and agent.num_steps == 2


# ------------------------------------------------------------------------------------- sequence log-probs
def test_sequence_logps_of_a_padded_batch_are_those_of_each_sequence_alone(tokenizer):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(gpt2_config(tokenizer, 16, 1, heads=2, positions=64)).eval()
    pad = tokenizer.pad_token_id
    prompts, responses = [[5, 6, 7, 8, 9], [10, 11]], [[12, 13], [14, 15, 16]]  # prompts of 5 and 2 tokens, left-padded
    queries, query_mask = left_pad(prompts, pad)
    padded = torch.nn.utils.rnn.pad_sequence([torch.tensor(r) for r in responses], batch_first=True, padding_value=pad)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(r), dtype=torch.long) for r in responses], batch_first=True)
    with torch.no_grad():
        batched = sequence_logps(model, queries, query_mask, padded, mask)
        for row, (prompt, response) in enumerate(zip(prompts, responses)):
            # alone: no padding, positions 0.. from the prompt's first token; the sum over the response's tokens
            logp = torch.log_softmax(model(input_ids=torch.tensor([prompt + response])).logits[0], dim=-1)
            alone = sum(logp[len(prompt) - 1 + t, token] for t, token in enumerate(response))
            assert batched[row].item() == pytest.approx(alone.item(), abs=1e-4)


def test_a_response_is_tokenised_without_the_tokenizer_s_special_tokens():
    class BosTokenizer:
        """Adds a BOS (id 1) unless told not to, as Llama's tokenizers do; EOS is 2."""

        eos_token_id = 2

        def __call__(self, text, add_special_tokens=True):
            ids = [10 + len(word) for word in text.split()]
            return {"input_ids": [1, *ids] if add_special_tokens else ids}

    assert tokenize_response(BosTokenizer(), "ab c") == [12, 11, 2]  # the text's ids and the EOS that ended it
    assert tokenize_response(BosTokenizer(), "ab c", max_new_tokens=2) == [12, 11]  # cut by the budget: no EOS
    assert tokenize_response(BosTokenizer(), "ab c", max_new_tokens=3) == [12, 11, 2]
    assert tokenize_response(BosTokenizer(), "", max_new_tokens=3) == [2]


@pytest.mark.parametrize("settings, message", [
    ({"beta": 0.0}, "^beta "),
    ({"label_smoothing": -0.1}, "^label_smoothing "),
    ({"label_smoothing": 0.5}, r"^label_smoothing must be < 0.5 \(a flip probability of 0.5 or more inverts the labels\), "
                               "got 0.5$"),
    ({"loss_type": "hinge"}, r"^loss_type must be one of \('sigmoid', 'ipo'\), got 'hinge'$"),
    ({"loss_type": "ipo", "label_smoothing": 0.1},
     r"^label_smoothing applies to loss_type='sigmoid' only \(IPO has no label smoothing\)$"),
])
def test_bad_dpo_settings_are_named_before_any_model_is_loaded(settings, message):
    with pytest.raises(ConfigError, match=message):
        DPO("no-such-model", None, None, [], **settings)


def test_a_bad_loss_type_is_named_by_the_loss():
    with pytest.raises(ConfigError, match=r"loss_type must be one of \('sigmoid', 'ipo'\), got 'hinge'"):
        dpo_loss(torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1), loss_type="hinge")


def test_rloo_passes_its_settings_on(task):
    env = RLHFVecEnv(num_envs=4, group_size=2, task=task, max_new_tokens=4,
                     reward_model=lambda prompts, responses: [0.0] * len(responses))
    agent = RLOO("TransformerPolicy", env, normalize_advantage=True, batch_size=2, clip_range=0.3, device="cpu")
    assert agent.standardize_advantages is True and agent.batch_size == 2 and agent.clip_range(1.0) == 0.3
    assert agent.group_size == 2


# ---------------------------------------------------------------------------------------- critic-free base
class RecordingLogger:
    def __init__(self):
        self.values = {}

    def record(self, key, value, exclude=None):
        self.values[key] = value


def test_group_view_splits_consecutive_rows_into_groups():
    assert group_view(torch.arange(6.0), 3).tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    with pytest.raises(ValueError, match=r"^5 responses do not split into groups of 2$"):
        group_view(torch.zeros(5), 2)


def test_every_token_of_a_response_gets_its_group_advantage():
    agent = RLOO.__new__(RLOO)
    agent.device, agent.group_size, agent.parallel = torch.device("cpu"), 2, DataParallel()
    agent.standardize_advantages, agent._logger = False, RecordingLogger()  # SB3's logger property reads _logger
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    # each response's reward is the sum of its row (wherever the env paid it): 1, 3 | 2, 2, in float64 as a buffer may hold
    rewards = torch.tensor([[0.5, 0.5, 0.0], [3.0, 0.0, 0.0], [1.0, 0.5, 0.5], [2.0, 0.0, 0.0]], dtype=torch.float64)
    buffer = SimpleNamespace(rewards=rewards, response_mask=mask)
    agent._compute_advantages(buffer, {})
    # leave-one-out: (1 - 3, 3 - 1 | 0, 0), on every real token and 0 on the padding
    assert buffer.advantages.dtype == torch.float32
    assert buffer.advantages.tolist() == [[-2.0, -2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert buffer.returns.tolist() == [[0.0] * 3] * 4 and buffer.returns.dtype == torch.float32
    # the groups' reward stds (unbiased) sqrt(2) and 0, their mean; the advantages' std over the rollout sqrt(8/3)
    assert agent.logger.values["rollout/reward_std_in_group"] == pytest.approx(2 ** 0.5 / 2)
    assert agent.logger.values["rollout/advantage_std"] == pytest.approx((8 / 3) ** 0.5)
    assert set(agent.logger.values) == {"rollout/reward_std_in_group", "rollout/advantage_std"}


def test_grpo_rewards_are_the_proxy_minus_the_penalty_and_the_reference_log_probs_go_to_the_buffer():
    agent = GRPO.__new__(GRPO)
    agent.n_envs = 3
    buffer = SimpleNamespace(logprobs=torch.full((3, 4), -9.0))
    episodes = {0: {"ref_token_logprobs": [-1.0, -2.0], "proxy_reward": 1.5, "penalty": 0.5, "reward": 99.0},
                2: {"ref_token_logprobs": [-0.5, -0.25, -3.0], "proxy_reward": -1.0, "penalty": 0.0, "reward": 99.0}}
    rewards = agent.sequence_rewards(buffer, episodes)
    assert rewards.tolist() == [1.0, 0.0, -1.0]  # not the env's reward (its KL is GRPO's loss term)
    assert buffer.ref_logprobs.tolist() == [[-1.0, -2.0, 0.0, 0.0], [0.0] * 4, [-0.5, -0.25, -3.0, 0.0]]
    assert buffer.ref_logprobs.dtype == torch.float32


# ---------------------------------------------------------------------------------------------------- LoRA
def tiny_gpt2(tokenizer) -> GPT2LMHeadModel:
    torch.manual_seed(0)
    return GPT2LMHeadModel(gpt2_config(tokenizer, 16, 1, heads=2, positions=64))


def test_lora_targets_by_shorthand_full_name_or_name_suffix(tokenizer):
    model = tiny_gpt2(tokenizer)
    every = ["transformer.h.0.attn.c_attn", "transformer.h.0.attn.c_proj", "transformer.h.0.mlp.c_fc",
             "transformer.h.0.mlp.c_proj", "lm_head"]
    assert linear_layers(model) == every
    assert target_modules(model, LoraSettings(target_modules="all-linear")) == "all-linear"  # PEFT's own shorthand
    assert target_modules(model, LoraSettings(target_modules="all-linear+head")) == every
    chosen = LoraSettings(target_modules=("c_attn", "transformer.h.0.mlp.c_fc", "mlp.c_proj"))
    assert target_modules(model, chosen) == ["c_attn", "transformer.h.0.mlp.c_fc", "mlp.c_proj"]
    # PEFT's rule: a name matches a layer's full name or a suffix after a dot, not any suffix ("_attn" is no layer)
    with pytest.raises(ConfigError, match=r"^--lora-target-modules: '_attn', 'h\.9' not in GPT2LMHeadModel \(its linear "
                                          r"layers: c_attn, c_fc, c_proj, lm_head; or 'all-linear' or 'all-linear\+head'\)$"):
        target_modules(model, LoraSettings(target_modules=("_attn", "c_fc", "h.9")))


def test_a_lora_policy_builds_on_the_reference_only_when_it_names_that_model(tokenizer, tmp_path):
    ref = tiny_gpt2(tokenizer)
    lora = {"lora": {"r": 2}}
    assert builds_on_reference({**lora, "model_name_or_path": ref}, ref)  # the same object
    assert not builds_on_reference({**lora, "model_name_or_path": tiny_gpt2(tokenizer)}, ref)  # an equal one is a copy
    assert not builds_on_reference({"model_name_or_path": ref}, ref)  # no LoRA
    assert not builds_on_reference({"lora": None, "model_name_or_path": ref}, ref)
    assert not builds_on_reference(lora, ref)  # no model given
    assert not builds_on_reference({**lora, "model_name_or_path": str(tmp_path)}, ref)  # built in memory: no path
    assert not builds_on_reference({**lora, "model_name_or_path": str(tmp_path)}, torch.nn.Linear(2, 2))  # no HF model
    ref.name_or_path = str(tmp_path / "policy")
    (tmp_path / "policy").mkdir()
    assert builds_on_reference({**lora, "model_name_or_path": str(tmp_path / "policy")}, ref)
    assert builds_on_reference({**lora, "model_name_or_path": tmp_path / "x" / ".." / "policy"}, ref)  # resolved
    assert not builds_on_reference({**lora, "model_name_or_path": str(tmp_path)}, ref)


def test_a_tied_head_is_recognised_under_peft_s_wrapper():
    embeddings = torch.nn.Embedding(5, 3)

    def peft_model(head):
        base = SimpleNamespace(get_output_embeddings=lambda: head, get_input_embeddings=lambda: embeddings)
        return SimpleNamespace(get_base_model=lambda: base)

    tied = torch.nn.Linear(3, 5, bias=False)
    tied.weight = embeddings.weight
    assert adapts_tied_head(peft_model(SimpleNamespace(base_layer=tied)))  # an adapted head sharing the embeddings
    assert not adapts_tied_head(peft_model(tied))  # not adapted (no base_layer)
    assert not adapts_tied_head(peft_model(SimpleNamespace(base_layer=torch.nn.Linear(3, 5, bias=False))))  # untied


def test_a_second_lora_policy_on_a_shared_reference_gets_a_clean_copy():
    class FakePeft(torch.nn.Module):
        """Unloads as PEFT does: in place, swapping each adapted layer back for its base layer."""

        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)

        def unload(self):
            self.layer = torch.nn.Identity()
            return self

    model = torch.nn.Linear(2, 2)
    assert lora_base(model) is model
    shared = FakePeft()
    adapted_layer = shared.layer
    base = lora_base(AdaptersDisabled(shared))
    assert isinstance(base.layer, torch.nn.Identity) and base is not shared
    assert shared.layer is adapted_layer  # the other policy keeps its adapters: the copy is a deep one


def test_grpo_s_batch_scale_is_the_std_of_every_process_s_rewards():
    agent = bare_grpo(scale_rewards="batch")
    # this process holds (1, 3), the other (2, 6): the scale is the std of all four, the advantages this process's own
    agent.parallel = DataParallel(InPlaceAccelerator(others=torch.tensor([2.0, 6.0])))
    everyone = torch.tensor([1.0, 3.0, 2.0, 6.0])
    expected = torch.tensor([-1.0, 1.0]) / (everyone.std() + 1e-4)
    torch.testing.assert_close(agent.group_advantages(torch.tensor([1.0, 3.0])), expected)
    agent.scale_rewards = "group"  # per group: no other process is asked
    torch.testing.assert_close(agent.group_advantages(torch.tensor([1.0, 3.0])),
                               torch.tensor([-1.0, 1.0]) / (2 ** 0.5 + 1e-4))
