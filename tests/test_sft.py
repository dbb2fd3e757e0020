"""Supervised fine-tuning: the loss mask and packing by hand, the task build's SFT pinned, ``rlhf-gym sft`` end to end,
every data format and the errors that name a bad record's file:line and field."""

import json
import math

import pytest
import torch
from helpers import cli_error, one_thread  # noqa: F401  (one_thread: an autouse fixture, one torch thread)
from transformers import AutoModelForCausalLM, GPT2LMHeadModel

from rlhf_gym.cli import parse_dataclass
from rlhf_gym.commands import sft as sft_command
from rlhf_gym.errors import ConfigError, DataError, MissingFileError
from rlhf_gym.gpt2 import gpt2_config
from rlhf_gym.sft import collate, evaluation_loss, forward_loss, lr_factor, train_sft
from rlhf_gym.sft_data import (Demonstration, DemonstrationError, Example, SFTConfig, check_demonstration, fit_examples,
                               pack, read_demonstrations, split_held_out, task_demonstrations, tokenize)
from rlhf_gym.tasks import world_of
from rlhf_gym.tasks.building import BuildConfig, sft_policy
from rlhf_gym.tasks.world import word_level_tokenizer
from rlhf_gym.utils import seed_everything

PINNED_LOSSES = [5.203924179077148, 5.045291423797607, 4.970583915710449, 4.897723197937012, 4.8572096824646,
                 4.823624134063721, 4.792919635772705, 4.778022766113281]
"""Per-step losses of the task build's SFT (rlhf-gym 0.9's train_sft, before the general loop) on 500 texts of the lists
world, 1 epoch, a 32-wide 1-layer GPT-2, seed 0."""
PINNED_BUILD = BuildConfig(n_sft_texts=500, sft_epochs=1, policy_width=32, policy_layers=1, seed=0)
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
TINY = dict(epochs=1, width=32, layers=1, n_eval_prompts=48, device="cpu", progress_bar=False)




@pytest.fixture(scope="module")
def reviews():
    return world_of("reviews").tokenizer()


@pytest.fixture(scope="module")
def chat_tokenizer():
    """The reviews words plus a chat template's markers, with the template set locally."""
    tokenizer = word_level_tokenizer((*world_of("reviews").vocabulary, "<|user|>", "<|assistant|>", "<|end|>"))
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def demonstration(record):
    return check_demonstration(record, "demos.jsonl:1")


# ---------------------------------------------------------------------------------------------- examples and masks
def test_completion_only_labels_by_hand(reviews):
    short = tokenize(demonstration({"prompt": "the pizza was", "completion": " great ."}), reviews)
    long = tokenize(demonstration({"prompt": "each bed felt", "completion": " solid and clean ."}), reviews)
    eos, pad = reviews.eos_token_id, reviews.pad_token_id
    assert short == Example(tuple(ids(reviews, "the pizza was")), (*ids(reviews, "great ."), eos))  # the EOS appended
    batch = collate([[short], [long]], pad, completion_only_loss=True, packed=False)
    n = len(long)
    assert batch["input_ids"].tolist() == [short.input_ids + [pad] * (n - len(short)), long.input_ids]
    assert batch["labels"].tolist() == [[-100] * 3 + list(short.completion_ids) + [-100] * (n - len(short)),
                                        [-100] * 3 + list(long.completion_ids)]  # prompt and padding out, EOS in
    assert batch["attention_mask"].tolist() == [[1] * len(short) + [0] * (n - len(short)), [1] * n]
    every = collate([[short]], pad, completion_only_loss=False, packed=False)
    assert every["labels"].tolist() == [short.input_ids]
    text = tokenize(demonstration({"text": "the pizza was great ."}), reviews)
    assert text.prompt_ids == () and text.labels(True) == text.input_ids  # a text record: every token learnt
    assert tokenize(demonstration({"text": "the pizza was great . <eos>"}), reviews) == text  # no second EOS


def test_packing_blocks_by_hand(reviews):
    assert pack([0, 1, 2, 3], [3, 4, 2, 5], 8) == [[0, 1], [2, 3]]  # next fit: 3 + 4, then 2 + 5
    assert pack([1, 3, 0, 2], [3, 4, 2, 5], 8) == [[1], [3, 0], [2]]  # 4; 5 + 3; 2 (5 + 3 + 2 > 8)
    with pytest.raises(ValueError, match="more than the blocks' 8"):
        pack([0], [9], 8)
    a, b = Example((5, 6), (7, 1)), Example((), (8, 9, 1))
    batch = collate([[a, b], [b]], reviews.pad_token_id, completion_only_loss=True, packed=True)
    assert "attention_mask" not in batch
    assert batch["input_ids"].tolist() == [[5, 6, 7, 1, 8, 9, 1], [8, 9, 1, 0, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2], [0, 1, 2, 0, 1, 2, 3]]  # each example from 0
    assert batch["labels"].tolist() == [[-100, -100, 7, 1, -100, 9, 1], [-100, 9, 1, -100, -100, -100, -100]]


def test_a_packed_example_is_learnt_as_an_unpacked_one(reviews):
    """Each packed example attends to itself only: the summed loss of packed rows is the unpacked rows'."""
    torch.manual_seed(0)
    model = GPT2LMHeadModel(gpt2_config(reviews, 32, 1)).eval()
    examples = [tokenize(d, reviews) for d in task_demonstrations(world_of("reviews"), 12, seed=3)]
    blocks = pack(range(len(examples)), [len(e) for e in examples], 64)
    assert max(len(block) for block in blocks) > 1

    def summed(rows, packed):
        batch = collate(rows, reviews.pad_token_id, True, packed)
        return forward_loss(model, batch, "cpu").item() * int((batch["labels"][:, 1:] != -100).sum())

    unpacked = summed([[e] for e in examples], False)
    assert summed([[examples[i] for i in block] for block in blocks], True) == pytest.approx(unpacked, rel=1e-5)


def test_truncation_split_and_schedule():
    example = Example((1, 2, 3), (4, 5, 6))
    assert example.truncated(4) == Example((1, 2, 3), (4,)) and example.truncated(2) == Example((1, 2), ())
    fitted = fit_examples([example, Example((1,), (2,))], 3, completion_only_loss=True)
    assert fitted.examples == [Example((1,), (2,))] and (fitted.n_truncated, fitted.n_left_out) == (1, 1)
    assert fit_examples([example], 3, completion_only_loss=False).examples == [Example((1, 2, 3), ())]
    train, held_out = split_held_out(list(range(10)), 0.3, seed=0)
    assert len(held_out) == 3 and sorted(train + held_out) == list(range(10)) and train == sorted(train)
    assert split_held_out(list(range(5)), 0.0, seed=0) == (list(range(5)), [])
    assert [lr_factor(s, 10, 2, "linear") for s in (0, 1, 2, 6)] == [0.0, 0.5, 1.0, 0.5]
    assert [lr_factor(s, 10, 0, "constant") for s in (0, 9)] == [1.0, 1.0]
    assert lr_factor(3, 10, 0, "linear") == 1.0 - 3 / 10  # the task build's expression, bit for bit


# ---------------------------------------------------------------------------------------------- the loop
def test_the_build_s_sft_reproduces_its_pinned_losses():
    seed_everything(PINNED_BUILD.seed)
    _, result = sft_policy(world_of("lists"), PINNED_BUILD, progress=False)
    assert result.losses == pytest.approx(PINNED_LOSSES, rel=1e-6, abs=0)


def test_loss_falls_and_packing_trains(reviews):
    examples = [tokenize(d, reviews) for d in task_demonstrations(world_of("reviews"), 256, seed=1)]
    train, held_out = examples[:224], examples[224:]
    for packing in (False, True):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(gpt2_config(reviews, 32, 1))
        before = evaluation_loss(model, held_out, reviews.pad_token_id, True)
        config = SFTConfig(epochs=2, batch_size=16, packing=packing, max_length=64, warmup_ratio=0.1)
        result = train_sft(model, train, config, reviews.pad_token_id, progress=False, eval_examples=held_out)
        assert len(result.eval_losses) == 2 and result.eval_losses[1] < result.eval_losses[0] < before
        assert result.losses[-1] < result.losses[0] and result.learning_rates[0] == 0.0
        assert all(math.isfinite(g) for g in result.grad_norms)
        assert len(result.losses) < 28 if packing else len(result.losses) == 28  # 2 x 14 batches; blocks are fewer


# ---------------------------------------------------------------------------------------------- the command
def test_the_command_without_completion_only_loss_trains_the_build_s_policy(tmp_path):
    args = sft_command.Args(data="lists", n_demonstrations=500, completion_only_loss=False, eval_fraction=0.0,
                            out_dir=str(tmp_path), **TINY)
    assert sft_command.main(args)["losses"] == pytest.approx(PINNED_LOSSES, rel=1e-6, abs=0)


def test_the_command_end_to_end_on_a_task(tmp_path):
    args = sft_command.Args(data="lists", n_demonstrations=600, out_dir=str(tmp_path), eval_fraction=0.1,
                            **{**TINY, "epochs": 2})
    result = sft_command.main(args)
    run_dir = tmp_path / result["run_dir"].split("/")[-1]
    assert run_dir.name.startswith("lists__sft__0__")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["n_train"] == 540 and summary["n_eval"] == 60 and summary["steps"] == 18
    assert summary["eval_losses"][1] < summary["eval_losses"][0] and summary["eval_loss"] == summary["eval_losses"][1]
    gold = summary["gold"]
    assert gold["after"]["gold_reward_mean"] > gold["before"]["gold_reward_mean"]
    assert gold["after"]["n_samples"] == 48
    policy = AutoModelForCausalLM.from_pretrained(run_dir / "policy")
    assert policy.config.vocab_size == len(world_of("lists").tokenizer())
    assert list((run_dir / "tensorboard").iterdir()) and json.loads((run_dir / "args.json").read_text())["data"] == "lists"
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no staging left


def test_the_command_on_jsonl_and_conversations_with_a_model(tmp_path, chat_tokenizer):
    """A saved model with a chat template of its own, on a file that mixes the formats (``--task`` for the gold), packed
    into blocks of the model's context length."""
    model_dir = tmp_path / "model"
    torch.manual_seed(0)
    GPT2LMHeadModel(gpt2_config(chat_tokenizer, 32, 1)).save_pretrained(model_dir)
    chat_tokenizer.save_pretrained(model_dir)
    samples = task_demonstrations(world_of("reviews"), 60, seed=0)
    records = []
    for i, d in enumerate(samples):
        prompt, completion = d.record["prompt"], d.record["completion"].strip()
        records.append([d.record, {"text": prompt + " " + completion},
                        {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]},
                        {"prompt": [{"role": "user", "content": prompt}],
                         "completion": [{"role": "assistant", "content": completion}]}][i % 4])
    data = tmp_path / "demos.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = sft_command.main(sft_command.Args(data=str(data), model=str(model_dir), task="reviews", learning_rate=3e-3,
                                               packing=True, batch_size=8, out_dir=str(tmp_path / "runs"),
                                               **{**TINY, "width": None, "layers": None}))
    assert result["n_train"] == 57 and 1 < result["steps"] < 8 and "gold" in result  # 57 examples, 2-3 to a block
    assert AutoModelForCausalLM.from_pretrained(f"{result['run_dir']}/policy").config.n_embd == 32


def test_conversations_render_with_the_chat_template(chat_tokenizer):
    messages = [{"role": "user", "content": "the pizza was"}, {"role": "assistant", "content": "great ."}]
    example = tokenize(demonstration({"messages": messages}), chat_tokenizer)
    assert example.prompt_ids == tuple(ids(chat_tokenizer, "<|user|> the pizza was <|end|> <|assistant|>"))
    # the template's end of turn is kept (it is not the EOS), then the EOS is appended
    assert example.completion_ids == (*ids(chat_tokenizer, "great . <|end|>"), chat_tokenizer.eos_token_id)
    split = demonstration({"prompt": messages[:1], "completion": messages[1:]})
    assert tokenize(split, chat_tokenizer) == example


def test_a_saved_dataset_with_mixed_formats(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [{"prompt": "the pizza was", "completion": " great ."}, {"text": "each bed felt solid ."}]
    columns = {key: [row.get(key) for row in rows] for key in ("prompt", "completion", "text")}  # None: not in the row
    datasets.Dataset.from_dict(columns).save_to_disk(str(tmp_path / "demos"))
    demos = read_demonstrations(tmp_path / "demos")
    assert [d.record for d in demos] == rows and demos[1].where == f"{tmp_path / 'demos'} row 1"


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("line, message", [
    ('{"prompt": "the pizza was"', "invalid JSON"),
    ('{"prompt": "the pizza was"}', "missing field 'completion'"),
    ('{"completion": "great"}', "missing field 'prompt'"),
    ('{"prompt": "the pizza was", "completion": "  "}', "field 'completion' is empty"),
    ('{"text": 3}', "field 'text' must be a string"),
    ('{"answer": "great"}', "no demonstration fields"),
    ('{"prompt": [{"role": "user", "content": "hi"}], "completion": "great"}', "'prompt' are lists of messages"),
    ('{"messages": [{"role": "user"}]}', "field 'messages': message 0 has no 'content'"),
])
def test_a_bad_record_names_its_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "demos.jsonl"
    path.write_text('{"text": "the pizza was great ."}\n' + line + "\n")
    with pytest.raises(DemonstrationError) as error:
        read_demonstrations(path)
    assert str(error.value).startswith(f"{path}:2: ") and message in str(error.value)


def test_bad_inputs_of_the_command(tmp_path, capsys, chat_tokenizer):
    assert f"{tmp_path / 'missing.jsonl'}" in cli_error(capsys, "sft", ["--data", tmp_path / "missing.jsonl", "--task",
                                                                        "reviews", "--out-dir", tmp_path])
    with pytest.raises(MissingFileError, match="demonstration file not found"):
        read_demonstrations(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no demonstrations"):
        read_demonstrations(tmp_path / "empty.jsonl")
    last_user = demonstration({"messages": [{"role": "user", "content": "the pizza was"}]})
    with pytest.raises(DataError, match=r"demos\.jsonl:1: field 'messages': the last message must be the assistant's"):
        tokenize(last_user, chat_tokenizer)
    with pytest.raises(ConfigError, match="has none"):  # conversations need a chat template
        tokenize(Demonstration({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
                               "demos.jsonl:1"), world_of("reviews").tokenizer())
    (tmp_path / "french.jsonl").write_text(json.dumps({"prompt": "le repas", "completion": " était bon"}) + "\n")
    message = cli_error(capsys, "sft", ["--data", tmp_path / "french.jsonl", "--task", "reviews", "--out-dir", tmp_path])
    assert "unknown to the tokenizer" in message and not list(tmp_path.glob("french__*"))  # no run directory


@pytest.mark.parametrize("argv, message", [
    (["--data", "demos.jsonl"], "pass --task, or --model"),
    (["--data", "demos.jsonl", "--task", "lists", "--n-demonstrations", "5"], "only with a task as --data"),
    (["--model", "gpt2", "--width", "64"], "--width: options of the default model"),
    (["--data", "lists", "--task", "reviews"], "the demonstrations are the lists task's"),
    (["--eval-fraction", "1"], "--eval-fraction must be in [0, 1)"),
    (["--lr-schedule", "cosine"], "--lr-schedule must be one of linear, constant"),
])
def test_bad_options_exit_2(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        parse_dataclass(sft_command.Args, "", argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
