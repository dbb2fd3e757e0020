"""LoRA through PEFT: only the adapters and the value head train, the env's reference is the same base weights with the
adapters off (one copy), export merges, SB3 save/load round-trips, bad options are refused."""

import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from rlhf_gym.agents import GRPO, RLHFVecEnv, TokenPPO
from rlhf_gym.agents.lora import AdaptersDisabled, LoraSettings, apply_lora
from rlhf_gym.errors import ConfigError
from rlhf_gym.generation import left_pad, sample

LORA = {"r": 4, "alpha": 8}


def lora_agent(task, algo=TokenPPO, lora=LORA, env_kwargs=None, **kwargs):
    env = RLHFVecEnv(num_envs=8, task=task, max_new_tokens=10, beta=0.1, **(env_kwargs or {}))
    return algo("TransformerPolicy", env, n_epochs=2, batch_size=4, learning_rate=1e-2, seed=0, device="cpu",
                policy_kwargs={"lora": lora}, **kwargs)


def contexts(tokenizer, texts=("the food was", "i think the service")) -> tuple[torch.Tensor, torch.Tensor]:
    return left_pad([tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], tokenizer.pad_token_id)


def logits(model, ids, mask) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def base_weight(model) -> torch.Tensor:
    """The frozen weight of the first attention projection (under its LoRA layer, when there is one)."""
    layer = model.transformer.h[0].attn.c_attn
    return getattr(layer, "base_layer", layer).weight


def test_only_the_adapters_and_the_value_head_train_on_every_linear_layer_and_the_head_by_default(task):
    agent = lora_agent(task)
    trainable = [name for name, p in agent.policy.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n or n.startswith("value_head.") for n in trainable)
    assert {"value_head.weight", "value_head.bias"} <= set(trainable)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable if ".lora_" in n}
    assert adapted == {"c_attn", "c_proj", "c_fc", "lm_head"}  # GPT-2's Conv1D layers (attention, MLP) and the head
    optimized = {id(p) for group in agent.policy.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in agent.policy.parameters() if p.requires_grad}
    assert agent.policy.lm.transformer.h[0].attn.c_attn.r["default"] == 4  # the settings reached PEFT


def test_the_env_scores_with_the_same_base_weights_with_the_adapters_off(task):
    env = RLHFVecEnv(num_envs=8, task=task, max_new_tokens=10, beta=0.1)
    loaded = env.batched_env.ref_model
    agent = TokenPPO("TransformerPolicy", env, seed=0, device="cpu", policy_kwargs={"lora": LORA})
    reference = env.batched_env.ref_model
    assert isinstance(reference, AdaptersDisabled) and agent.policy.lm is loaded  # adapted in place, not copied
    policy_weights = {p.data_ptr() for p in agent.policy.parameters()}
    assert {p.data_ptr() for p in reference.parameters()} <= policy_weights
    assert base_weight(reference.base).data_ptr() == base_weight(agent.policy.lm).data_ptr()
    assert agent.policy_kwargs["model_name_or_path"] == loaded.name_or_path  # what SB3 saves: the directory, not weights


def test_the_policy_starts_as_the_reference_and_only_it_moves(task, ref_model, tokenizer):
    agent = lora_agent(task)
    reference = agent.batched_env.ref_model
    ids, mask = contexts(tokenizer)
    sft = logits(ref_model, ids, mask)
    torch.testing.assert_close(logits(agent.policy.lm, ids, mask), sft)  # B = 0: the adapters start as the identity
    torch.testing.assert_close(logits(reference, ids, mask), sft)
    agent.learn(total_responses=8)
    assert torch.equal(logits(reference, ids, mask), sft)  # the reference is the untouched SFT policy
    assert not torch.allclose(logits(agent.policy.lm, ids, mask), sft, atol=1e-4)
    assert agent.policy.value_head.weight.abs().sum() > 0  # the value head trained too
    # sampling from the reference view (the "before" evaluation) runs its KV cache like the plain model's
    end, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    viewed = sample(reference, ids, mask, 8, end, pad, generator=torch.Generator().manual_seed(0))
    plain = sample(ref_model, ids, mask, 8, end, pad, generator=torch.Generator().manual_seed(0))
    assert torch.equal(viewed.tokens, plain.tokens)
    torch.testing.assert_close(viewed.logprobs, plain.logprobs)


def test_export_merges_the_adapters_into_a_plain_model_and_training_goes_on(task, ref_model, tokenizer, tmp_path):
    from transformers import pipeline

    agent = lora_agent(task)
    agent.learn(total_responses=8)
    agent.export_pretrained(tmp_path / "policy")
    assert not (tmp_path / "policy" / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "policy")
    assert not any("lora" in name for name in plain.state_dict())
    # the adapted head was tied to the input embeddings: the export unties it and keeps the embeddings as they were
    assert not plain.config.tie_word_embeddings and plain.lm_head.weight is not plain.transformer.wte.weight
    torch.testing.assert_close(plain.transformer.wte.weight, ref_model.transformer.wte.weight, rtol=0, atol=0)
    ids, mask = contexts(tokenizer)
    torch.testing.assert_close(logits(plain, ids, mask), logits(agent.policy.lm, ids, mask), atol=1e-5, rtol=1e-5)
    out = pipeline("text-generation", model=str(tmp_path / "policy"), device="cpu")("the food was", max_new_tokens=3)
    assert out[0]["generated_text"].startswith("the food was")
    before = agent.policy.lm.transformer.h[0].attn.c_attn.lora_B["default"].weight.clone()
    agent.learn(total_responses=8)  # the adapters were not merged into the policy itself
    assert not torch.equal(agent.policy.lm.transformer.h[0].attn.c_attn.lora_B["default"].weight, before)


def test_save_load_round_trip_keeps_adapters_value_head_optimizer_and_one_copy(task, ref_model, tokenizer, tmp_path):
    agent = lora_agent(task)
    agent.learn(total_responses=8)
    agent.save(tmp_path / "agent.zip")
    env = RLHFVecEnv(num_envs=8, task=task, max_new_tokens=10, beta=0.1)
    loaded = TokenPPO.load(tmp_path / "agent.zip", env=env, device="cpu")
    assert loaded.policy.lora == LoraSettings(**LORA)
    assert base_weight(env.batched_env.ref_model.base).data_ptr() == base_weight(loaded.policy.lm).data_ptr()
    saved, restored = agent.policy.state_dict(), loaded.policy.state_dict()
    assert saved.keys() == restored.keys()
    for name in saved:
        torch.testing.assert_close(restored[name], saved[name], rtol=0, atol=0, msg=name)
    saved_state = agent.policy.optimizer.state_dict()["state"]
    loaded_state = loaded.policy.optimizer.state_dict()["state"]
    assert saved_state.keys() == loaded_state.keys()
    torch.testing.assert_close(loaded_state[0]["exp_avg"], saved_state[0]["exp_avg"])
    ids, mask = contexts(tokenizer)
    torch.testing.assert_close(logits(env.batched_env.ref_model, ids, mask), logits(ref_model, ids, mask))
    # on the agent's own env (whose reference is the first agent's view): a policy on a copy of its base
    again = TokenPPO.load(tmp_path / "agent.zip", env=agent.env, device="cpu")
    torch.testing.assert_close(logits(again.policy.lm, ids, mask), logits(agent.policy.lm, ids, mask))
    torch.testing.assert_close(logits(agent.batched_env.ref_model, ids, mask), logits(ref_model, ids, mask))
    loaded.learn(total_responses=8)
    without_env = TokenPPO.load(tmp_path / "agent.zip", device="cpu")  # the base from the saved directory
    torch.testing.assert_close(logits(without_env.policy.lm, ids, mask), logits(agent.policy.lm, ids, mask))


def test_critic_free_and_nlpo_train_adapters(task):
    grpo = lora_agent(task, algo=GRPO, env_kwargs={"group_size": 4})
    grpo.learn(total_responses=8)
    assert grpo.policy.lm.transformer.h[0].attn.c_attn.lora_B["default"].weight.abs().sum() > 0
    nlpo = lora_agent(task, lora={**LORA, "target_modules": "all-linear"}, env_kwargs={"mask_top_p": 0.9},
                      use_action_masks=True, mask_refresh_every=1)
    nlpo.learn(total_responses=8)
    trained = nlpo.policy.plain_lm().state_dict()
    nlpo.learn(total_responses=16, reset_num_timesteps=False)  # its rollout starts with a refresh of the masking copy
    torch.testing.assert_close(nlpo.batched_env._setup.mask.model.state_dict(), trained)  # the merged policy


def test_nlpo_refuses_a_lora_head_tied_to_the_embeddings(task):
    nlpo = lora_agent(task, env_kwargs={"mask_top_p": 0.9}, use_action_masks=True)  # the head is adapted by default
    with pytest.raises(ConfigError, match="--lora-target-modules all-linear"):
        nlpo.learn(total_responses=8)  # the first rollout copies the policy into the masking model


def test_a_reference_masking_model_is_replaced_by_the_shared_reference(task):
    agent = lora_agent(task, env_kwargs={"mask_top_p": 0.9, "mask_model": "reference"}, use_action_masks=True)
    assert agent.batched_env._setup.mask.model is agent.batched_env.ref_model  # the adapters-off view, not the policy


@pytest.mark.parametrize("targets, adapted", [
    ("c_attn", {"h.0.attn.c_attn", "h.1.attn.c_attn"}),
    ("all-linear", {f"h.{i}.{layer}" for i in (0, 1) for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}),
])
def test_target_modules_choose_the_adapted_layers(task, targets, adapted):
    agent = lora_agent(task, lora={"r": 2, "alpha": 2, "target_modules": targets})
    names = {n.split(".lora_")[0] for n, p in agent.policy.named_parameters() if ".lora_" in n}
    assert names == {f"lm.transformer.{name}" for name in adapted}


@pytest.mark.parametrize("settings, message", [
    ({"r": 0}, "--lora-r"), ({"r": -2}, "--lora-r"), ({"r": 1.5}, "--lora-r"), ({"alpha": 0}, "--lora-alpha"),
    ({"alpha": float("nan")}, "--lora-alpha"), ({"target_modules": ""}, "--lora-target-modules"),
    ({"target_modules": "c_attn,,c_fc"}, "--lora-target-modules"), ({"dropout": 0.1}, "unknown setting.*dropout"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ConfigError, match=message):
        LoraSettings.parse(settings)


def test_an_unknown_target_module_is_named_with_the_model_layers(ref_model):
    layers = r"'q_proj' not in GPT2LMHeadModel \(its linear layers: c_attn, c_fc, c_proj, lm_head"
    with pytest.raises(ConfigError, match=layers):
        apply_lora(ref_model, LoraSettings(target_modules=["c_attn", "q_proj"]))
    assert not any("lora" in name for name in ref_model.state_dict())  # refused before anything was changed


def test_lora_without_peft_says_how_to_install_it(task, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # what an environment without the extra looks like to import
    with pytest.raises(ConfigError, match=r'pip install "rlhf-gym\[lora\]"'):
        lora_agent(task)


def test_a_shared_reference_must_have_the_env_vocabulary(task):
    from transformers import GPT2Config, GPT2LMHeadModel

    env = RLHFVecEnv(num_envs=2, task=task, max_new_tokens=4)
    with pytest.raises(ConfigError, match="vocabulary of 10"):
        env.batched_env.share_reference(GPT2LMHeadModel(GPT2Config(vocab_size=10, n_layer=1, n_embd=8, n_head=2)))


def test_the_speed_benchmark_runs_ours_with_lora(tmp_path):
    from rlhf_gym.benchmarks.clock import PhaseClock
    from rlhf_gym.benchmarks.measure import SYSTEMS, run_system
    from rlhf_gym.benchmarks.protocol import Settings
    from rlhf_gym.benchmarks.workloads import WORKLOADS, build_models

    workload, cpu = WORKLOADS["quick"], torch.device("cpu")
    files = build_models(workload, tmp_path, seed=0)
    settings = Settings(iterations=1, warmup=0, sb3_iterations=1, amp="none", peak_tflops=None, threads=0, seed=0)
    full, lora = (run_system(system, workload, files, settings, cpu, PhaseClock(cpu)) for system in ("ours", "ours-lora"))
    assert "ours-lora" in SYSTEMS and len(lora.iterations) == 1 and lora.mean_response_length == workload.response_length
    assert lora.trainable_parameters < full.trainable_parameters / 3  # adapters and the value head only


def test_the_command_line_builds_a_lora_agent_with_its_learning_rate(task):
    from rlhf_gym.agents.experiment import LORA_LEARNING_RATE, TrainConfig, build_env_and_agent

    config = TrainConfig(lora_r=4, lora_alpha=8.0, lora_target_modules="c_attn,c_proj", n_envs=4, batch_size=2)
    env, agent = build_env_and_agent(config)
    assert agent.policy_kwargs["lora"] == {"r": 4, "alpha": 8.0, "target_modules": ["c_attn", "c_proj"]}
    assert agent.learning_rate == LORA_LEARNING_RATE  # the LoRA default unless --learning-rate is given
    adapted = {name.split(".")[-1] for name, module in agent.policy.lm.named_modules() if hasattr(module, "lora_A")}
    assert adapted == {"c_attn", "c_proj"}
    assert isinstance(env.batched_env.ref_model, AdaptersDisabled)
    assert TrainConfig(lora_r=4, learning_rate=3e-4).lr == 3e-4



def test_the_adapter_update_is_scaled_by_alpha_over_r():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=10, n_layer=1, n_embd=8, n_head=2))
    peft_model = apply_lora(model, LoraSettings(r=2, alpha=6, target_modules="c_attn"))
    layer = peft_model.get_base_model().transformer.h[0].attn.c_attn  # GPT-2's Conv1D: weight [in 8, out 24]
    assert layer.scaling["default"] == 3.0  # alpha / r = 6 / 2
    a = torch.zeros(2, 8)  # lora_A: a Linear(8 -> 2), weight [r, in]: picks x[0] and x[1]
    a[0, 0], a[1, 1] = 1.0, 1.0
    b = torch.zeros(24, 2)  # lora_B: a Linear(2 -> 24), weight [out, r]
    b[0, 0], b[1, 1], b[23, 0] = 1.0, 2.0, -1.0
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(a)
        layer.lora_B["default"].weight.copy_(b)
        x = torch.arange(1.0, 9.0)[None]  # [[1, 2, ..., 8]]
        delta = layer(x) - layer.base_layer(x)
    # (alpha / r) x A^T B^T: x A^T = [x0, x1] = [1, 2]; B^T maps it to out[0] = 1 * 1, out[1] = 2 * 2, out[23] = -1 * 1;
    # times 3: out[0] = 3, out[1] = 12, out[23] = -3, the other 21 outputs 0 (a scale of alpha = 6 or 1 would differ)
    expected = torch.zeros(1, 24)
    expected[0, 0], expected[0, 1], expected[0, 23] = 3.0, 12.0, -3.0
    torch.testing.assert_close(delta, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(delta, 3.0 * x @ a.T @ b.T, rtol=0, atol=1e-5)
