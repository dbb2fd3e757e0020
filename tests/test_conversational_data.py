"""Conversational data (rlhf_gym.conversation): chat-template rendering by hand, conversational preference files loaded
and rendered (flat ones unchanged), the errors naming the file, line, column and tokenizer, and train-rm, DPO and KTO
trained on conversational data end to end."""

import json

import pytest
import test_dpo
from helpers import cli_error, write_word_comparisons

from rlhf_gym.agents.kto import KTO
from rlhf_gym.cli import run_command
from rlhf_gym.conversation import (ChatTemplateError, check_chat_template, is_conversation, render_completion,
                                   render_messages, render_prompt, render_record)
from rlhf_gym.errors import ConfigError, DataError
from rlhf_gym.preferences import PreferenceDataError, load_preferences, validate_unpaired_record
from rlhf_gym.tasks.world import word_level_tokenizer

one_thread = test_dpo.one_thread  # tiny models: one torch thread

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
EOS_TEMPLATE = TEMPLATE.replace("<|end|>", "{{ eos_token }}")  # the end of a turn is the EOS (as Qwen's <|im_end|>)
MARKERS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]


def user(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


def assistant(content: str) -> list[dict]:
    return [{"role": "assistant", "content": content}]


def flat_comparisons(tmp_path) -> list[dict]:
    """The sixteen word comparisons of the offline trainers' tests (helpers.write_word_comparisons)."""
    path = write_word_comparisons(tmp_path / "flat.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def conversational(record: dict) -> dict:
    """``record`` with its prompt as the user's message and its responses as the assistant's."""
    return {**record, "prompt": user(record["prompt"]), "chosen": assistant(record["chosen"]),
            "rejected": assistant(record["rejected"])}


def write_jsonl(path, records: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def chat_tokenizer(tmp_path, template: str | None = TEMPLATE):
    """A word-level tokenizer of the word comparisons and the template's markers, with ``template`` (None: none)."""
    words = {w for r in flat_comparisons(tmp_path) for text in (r["prompt"], r["chosen"], r["rejected"]) for w in text.split()}
    tokenizer = word_level_tokenizer(MARKERS + sorted(words | {"hello", "hi"}))
    tokenizer.chat_template = template
    return tokenizer


# ------------------------------------------------------------------------------------------- rendering
def test_is_conversation():
    assert is_conversation(user("hi")) and is_conversation(user("a") + assistant(""))
    for value in ("hi", [], [{"role": "user"}], [{"role": "user", "content": 1}], ["hi"], {"role": "user", "content": "x"}):
        assert not is_conversation(value)


def test_render_prompt_and_completion_by_hand(tmp_path):
    tokenizer = chat_tokenizer(tmp_path)
    prompt = [{"role": "system", "content": "be kind"}, *user("hello")]
    assert render_prompt(prompt, tokenizer, "x") == "<|system|> be kind <|end|> <|user|> hello <|end|> <|assistant|>"
    prompt_text, completion = render_completion(prompt, assistant("hi"), tokenizer, "x")
    assert prompt_text == render_prompt(prompt, tokenizer, "x")
    assert completion == "hi <|end|>"  # the end-of-turn marker is not the EOS: kept, whitespace stripped
    tokenizer.chat_template = EOS_TEMPLATE
    assert render_completion(prompt, assistant("hi"), tokenizer, "x") == (
        "<|system|> be kind <eos> <|user|> hello <eos> <|assistant|>", "hi")  # the EOS is left to the trainers


def test_render_messages_splits_off_the_assistants_last_turn(tmp_path):
    tokenizer = chat_tokenizer(tmp_path)
    conversation = user("hello") + assistant("hi") + user("hello")
    assert render_messages(conversation + assistant("hi"), tokenizer, "sft.jsonl:3") == (
        "<|user|> hello <|end|> <|assistant|> hi <|end|> <|user|> hello <|end|> <|assistant|>", "hi <|end|>")
    with pytest.raises(DataError, match=r"^sft.jsonl:3: the last message must be the assistant's .* got role 'user'"):
        render_messages(conversation, tokenizer, "sft.jsonl:3")
    with pytest.raises(DataError, match=r"^sft.jsonl:3: the assistant's message needs a conversation before it"):
        render_messages(assistant("hi"), tokenizer, "sft.jsonl:3")
    with pytest.raises(DataError, match=r"^sft.jsonl:3: message 1 has no 'role'"):
        render_messages([*user("hello"), {"content": "hi"}], tokenizer, "sft.jsonl:3")


def test_a_missing_template_names_where_and_the_tokenizer(tmp_path):
    tokenizer = chat_tokenizer(tmp_path, template=None)
    tokenizer.name_or_path = "my/tokenizer"
    with pytest.raises(ChatTemplateError, match=r"^sft.jsonl:2: conversational data needs a tokenizer with a chat "
                                                rf"template; {type(tokenizer).__name__} \(my/tokenizer\) has none"):
        render_prompt(user("hello"), tokenizer, "sft.jsonl:2")
    with pytest.raises(ConfigError, match=r"^x: conversational data needs a tokenizer with a chat template, and none"):
        check_chat_template(None, "x")


def test_templates_that_refuse_or_rewrite_the_conversation_are_config_errors(tmp_path):
    tokenizer = chat_tokenizer(tmp_path, "{{ raise_exception('roles must alternate') }}")
    with pytest.raises(ConfigError, match=r"^x: the chat template of .* refuses the conversation: roles must alternate"):
        render_prompt(user("hello"), tokenizer, "x")
    # the generation prompt is not what the assistant's turn starts with: no prompt/completion split
    tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }} {% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    with pytest.raises(ConfigError, match=r"^x: the chat template of .* renders the prompt differently once the response"):
        render_completion(user("hello"), assistant("hi"), tokenizer, "x")


def test_render_record_renders_comparisons_and_unpaired_examples(tmp_path):
    tokenizer = chat_tokenizer(tmp_path)
    flat = {"prompt": "hello", "chosen": "hi", "rejected": "hello", "margin": 1.0}
    assert render_record(flat, tokenizer, "x") is flat and render_record(flat, None, "x") is flat
    assert render_record(conversational(flat), tokenizer, "x") == {
        "prompt": "<|user|> hello <|end|> <|assistant|>", "chosen": "hi <|end|>", "rejected": "hello <|end|>",
        "margin": 1.0}
    example = {"prompt": user("hello"), "completion": assistant("hi"), "label": False}
    assert render_record(example, tokenizer, "x") == {"prompt": "<|user|> hello <|end|> <|assistant|>",
                                                      "completion": "hi <|end|>", "label": False}
    with pytest.raises(DataError, match=r"^x: column\(s\) 'prompt' are lists of messages but 'chosen', 'rejected' not"):
        render_record({**flat, "prompt": user("hello")}, tokenizer, "x")


# ------------------------------------------------------------------------------------------- loading
def test_a_conversational_file_loads_rendered(tmp_path):
    tokenizer = chat_tokenizer(tmp_path, EOS_TEMPLATE)
    flat = flat_comparisons(tmp_path)
    path = write_jsonl(tmp_path / "chat.jsonl", [conversational(r) for r in flat])
    expected = [{**r, "prompt": f"<|user|> {r['prompt']} <eos> <|assistant|>"} for r in flat]
    assert load_preferences(path, tokenizer=tokenizer) == expected
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_list([conversational(r) for r in flat])
    assert load_preferences(dataset, tokenizer=tokenizer) == expected


def test_a_flat_file_loads_unchanged_with_or_without_a_tokenizer(tmp_path):
    path = write_word_comparisons(tmp_path / "flat.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert load_preferences(path) == records == load_preferences(path, tokenizer=chat_tokenizer(tmp_path))
    assert load_preferences(path, tokenizer=chat_tokenizer(tmp_path, template=None)) == records


def test_conversational_records_without_a_template_are_refused_naming_the_file_even_when_skipping(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [{"prompt": "a", "chosen": "b", "rejected": "c"},
                                                 conversational({"prompt": "a", "chosen": "b", "rejected": "c"})])
    tokenizer = chat_tokenizer(tmp_path, template=None)
    with pytest.raises(ChatTemplateError, match=rf"^{path}:2: conversational data needs a tokenizer with a chat template; "
                                                rf"{type(tokenizer).__name__} has none"):
        load_preferences(path, tokenizer=tokenizer, skip_bad_lines=True)
    with pytest.raises(ChatTemplateError, match=rf"^{path}:2: conversational data needs .* and none was given"):
        load_preferences(path)


MALFORMED = [
    ([{"content": "hi"}], r"message 0 has no 'role'"),
    ([{"role": "assistant"}], r"message 0 has no 'content'"),
    ([{"role": "assistant", "content": 3}], r"message 0's 'content' must be a string, got int"),
    ([{"role": None, "content": "hi"}], r"message 0's 'role' must be a string, got NoneType"),
    (["hi"], r"message 0 must be an object with 'role' and 'content', got str"),
    ([], r"an empty list of messages"),
    ([{"role": "assistant", "content": " "}], r"is empty \(every message's content is blank\)"),
]


@pytest.mark.parametrize("chosen, error", MALFORMED)
def test_a_malformed_message_names_the_file_line_and_column(tmp_path, chosen, error):
    good = conversational({"prompt": "a", "chosen": "b", "rejected": "c"})
    path = write_jsonl(tmp_path / "chat.jsonl", [good, {**good, "chosen": chosen}])
    with pytest.raises(PreferenceDataError, match=rf"^{path}:2: column 'chosen'(: | ){error}"):
        load_preferences(path, tokenizer=chat_tokenizer(tmp_path))
    assert len(load_preferences(path, tokenizer=chat_tokenizer(tmp_path), skip_bad_lines=True)) == 1


def test_a_column_that_is_neither_text_nor_messages_and_a_mixed_record_are_refused(tmp_path):
    good = conversational({"prompt": "a", "chosen": "b", "rejected": "c"})
    path = write_jsonl(tmp_path / "chat.jsonl", [good, {**good, "chosen": {"role": "assistant", "content": "b"}}])
    with pytest.raises(PreferenceDataError, match=rf"^{path}:2: column 'chosen' must be a string or a list of messages, "
                                                  "got dict"):
        load_preferences(path, tokenizer=chat_tokenizer(tmp_path))
    write_jsonl(path, [{**good, "chosen": "b", "rejected": "c"}])
    with pytest.raises(PreferenceDataError, match=rf"^{path}:1: column\(s\) 'prompt' are lists of messages but 'chosen', "
                                                  "'rejected' not"):
        load_preferences(path, tokenizer=chat_tokenizer(tmp_path))
    example = {"prompt": "a", "completion": assistant("b"), "label": True}
    with pytest.raises(PreferenceDataError, match=r"^x: column\(s\) 'completion' are lists of messages but 'prompt' not"):
        validate_unpaired_record(example, "x")
    assert validate_unpaired_record({**example, "prompt": user("a")}, "x")["completion"] == assistant("b")


# ------------------------------------------------------------------------------------------- training
def test_train_rm_trains_on_a_conversational_file_with_the_models_chat_template(tmp_path, capsys):
    tokenizer = chat_tokenizer(tmp_path)
    model_dir = tmp_path / "base"
    test_dpo.tiny_lm(tokenizer).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data = write_jsonl(tmp_path / "chat.jsonl", [conversational(r) for r in flat_comparisons(tmp_path)])
    run_command("train-rm", ["--data", str(data), "--model", str(model_dir), "--out-dir", str(tmp_path / "rm"),
                             "--epochs", "1", "--batch-size", "4"])
    metadata = json.loads((tmp_path / "rm" / "reward_metadata.json").read_text())
    assert metadata["n_train"] + metadata["n_eval"] == 16
    # the default model's word-level tokenizers have no chat template; nor has a --model without one
    message = cli_error(capsys, "train-rm", ["--data", data, "--out-dir", tmp_path / "rm2"])
    assert message.startswith(f"error: {data}:1: conversational data needs a tokenizer with a chat template")
    assert message.endswith("pass --model with one)")
    tokenizer.chat_template = None
    tokenizer.save_pretrained(model_dir)
    (model_dir / "chat_template.jinja").unlink(missing_ok=True)
    message = cli_error(capsys, "train-rm", ["--data", data, "--model", model_dir, "--out-dir", tmp_path / "rm2"])
    assert message.startswith(f"error: {data}:1: conversational data needs a tokenizer with a chat template; "
                              f"{type(tokenizer).__name__} ({model_dir}) has none")


def test_dpo_trains_on_conversational_comparisons_from_a_file_or_a_list(tmp_path):
    tokenizer = chat_tokenizer(tmp_path, EOS_TEMPLATE)
    records = [conversational(r) for r in flat_comparisons(tmp_path)]
    dpo = test_dpo.tiny_dpo(tokenizer, str(write_jsonl(tmp_path / "chat.jsonl", records)))
    assert dpo.comparisons == load_preferences(tmp_path / "chat.jsonl", tokenizer=tokenizer)
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert dpo.prompt_ids[0] == ids("<|user|> the soup was <eos> <|assistant|>")
    assert dpo.response_ids[0][0] == [*ids("really great ."), tokenizer.eos_token_id]  # one EOS, as the env samples
    dpo.learn(8)
    assert dpo.num_steps == 2
    assert test_dpo.tiny_dpo(tokenizer, records).comparisons == dpo.comparisons
    no_template = chat_tokenizer(tmp_path, template=None)
    with pytest.raises(ChatTemplateError, match=rf"^comparison 0: conversational data needs .* {type(no_template).__name__}"):
        test_dpo.tiny_dpo(no_template, records)


def test_kto_trains_on_conversational_examples(tmp_path):
    tokenizer = chat_tokenizer(tmp_path, EOS_TEMPLATE)
    examples = [{"prompt": user(prompt), "completion": assistant(text), "label": label}
                for prompt in ("the soup was", "our waiter seemed") for text, label in (("really great .", True),
                                                                                       ("not great .", False))]
    kto = KTO(test_dpo.tiny_lm(tokenizer), None, tokenizer, examples, learning_rate=1e-2, batch_size=2, device="cpu")
    assert [(e["prompt"], e["completion"]) for e in kto.comparisons] == [
        (f"<|user|> {prompt} <eos> <|assistant|>", text) for prompt in ("the soup was", "our waiter seemed")
        for text in ("really great .", "not great .")]
    kto.learn(4)
    assert kto.num_steps == 2
