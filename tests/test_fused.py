"""Fused kernels for the same functions: transformers' op-by-op tanh GELU replaced by torch's fused one."""

import torch
from transformers import GPT2Config, GPT2LMHeadModel
from transformers.activations import NewGELUActivation

from rlhf_gym.fused import fuse_gelu
from rlhf_gym.utils import load_model


def tiny_gpt2(activation="gelu_new"):
    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16, activation_function=activation,
                        bos_token_id=0, eos_token_id=0)
    return GPT2LMHeadModel(config).eval()


def test_fused_gelu_computes_the_same_logits_and_gradients():
    model, fused = tiny_gpt2(), tiny_gpt2()
    assert fuse_gelu(fused) == 2  # one MLP activation per layer
    assert not any(isinstance(m, NewGELUActivation) for m in fused.modules())
    ids = torch.randint(0, 64, (3, 10))
    logits, fused_logits = model(ids).logits, fused(ids).logits
    torch.testing.assert_close(fused_logits, logits, atol=1e-5, rtol=0)
    logits.logsumexp(-1).sum().backward()
    fused_logits.logsumexp(-1).sum().backward()
    for (name, p), q in zip(model.named_parameters(), fused.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_other_activations_are_left_alone():
    model = tiny_gpt2("gelu")  # the exact (erf) GELU is another function
    assert fuse_gelu(model) == 0


def test_loaded_models_are_fused_and_save_as_before(tmp_path):
    tiny_gpt2().save_pretrained(tmp_path / "saved")
    loaded = load_model(tmp_path / "saved", "policy", "the policy")
    assert not any(isinstance(m, NewGELUActivation) for m in loaded.modules())
    loaded.save_pretrained(tmp_path / "again")  # weights and config as saved: a plain GPT-2 with gelu_new
    assert load_model(tmp_path / "again", "policy", "the policy").config.activation_function == "gelu_new"
    original, resaved = (GPT2LMHeadModel.from_pretrained(tmp_path / d) for d in ("saved", "again"))
    for p, q in zip(original.parameters(), resaved.parameters()):
        assert torch.equal(p, q)
