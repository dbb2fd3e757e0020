"""Conversational data: prompts and responses given as chat messages, rendered to flat text by a chat template.

TRL's convention: a text column holds either a string (the *flat* format, as everywhere else in rlhf-gym) or a
conversation, a list of ``{"role", "content"}`` messages:

- a comparison ``{"prompt", "chosen", "rejected"}``: ``prompt`` is the conversation so far (usually ending with the
  user's turn), ``chosen`` and ``rejected`` the assistant's turn(s), usually one message each;
- an unpaired KTO example ``{"prompt", "completion", "label"}``: the same, with one ``completion``;
- an SFT example ``{"messages"}``: a whole conversation that ends with the assistant's message.

One record is all flat or all conversational, as TRL requires: a conversational prompt with flat responses (or the
other way round) is refused (:func:`check_all_or_none`). Example::

    {"prompt": [{"role": "user", "content": "Name a fruit."}],
     "chosen": [{"role": "assistant", "content": "A pear."}],
     "rejected": [{"role": "assistant", "content": "A chair."}]}

The tokenizer's chat template renders it (as TRL's ``maybe_apply_chat_template``): the prompt is
``apply_chat_template(prompt, add_generation_prompt=True)`` (so it ends with the template's assistant header), and a
response is what ``apply_chat_template(prompt + response)`` adds after that prompt. A response is then cut as the env
cuts a sampled one: the env stops a response at the EOS token and decodes it with ``skip_special_tokens=True`` and
``.strip()`` (:class:`rlhf_gym.envs.episodes.EpisodeBatch`), and the DPO family appends the EOS to every response itself
(:func:`rlhf_gym.agents.offline.tokenize_response`). So a rendered response loses a trailing EOS token's text (a
template whose end of turn is the EOS, e.g. ``<|im_end|>`` of a Qwen chat model) and its surrounding whitespace;
anything else the template writes (an end-of-turn marker that is not the EOS) is kept. With the test template
``{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}{% if add_generation_prompt
%}<|assistant|>{% endif %}`` and EOS ``<|end|>``, the example renders to the prompt ``"<|user|> Name a fruit. <|end|>
<|assistant|>"`` and the responses ``"A pear."`` and ``"A chair."``; the reward model then reads
``join_text(prompt, response)`` (:func:`rlhf_gym.reward_model.join_text`: one space between), exactly as it reads the
env's samples for that prompt.
"""

from __future__ import annotations

from typing import Any

from .errors import ConfigError, DataError

TEXT_COLUMNS = ("prompt", "chosen", "rejected", "completion")
"""The columns of a comparison or of an unpaired example that may hold a conversation."""
ASSISTANT = "assistant"


class ChatTemplateError(ConfigError):
    """Conversational data without a tokenizer, or with one that has no chat template."""


def is_conversation(value: Any) -> bool:
    """Whether ``value`` is a conversation: a non-empty list of dicts, each with a string ``role`` and ``content``."""
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in value))


def check_messages(value: Any, where: str, error: type[Exception] = DataError) -> list[dict]:
    """``value`` if it is a conversation (:func:`is_conversation`), else ``error`` naming ``where`` and the bad message."""
    if not isinstance(value, list):
        raise error(f"{where}: expected a list of messages, got {type(value).__name__}")
    if not value:
        raise error(f"{where}: an empty list of messages")
    for i, message in enumerate(value):
        if not isinstance(message, dict):
            raise error(f"{where}: message {i} must be an object with 'role' and 'content', got {type(message).__name__}")
        for key in ("role", "content"):
            if key not in message:
                raise error(f"{where}: message {i} has no {key!r}")
            if not isinstance(message[key], str):
                raise error(f"{where}: message {i}'s {key!r} must be a string, got {type(message[key]).__name__}")
    return value


def check_all_or_none(record: dict, where: str, error: type[Exception] = DataError) -> bool:
    """Whether ``record``'s text columns (:data:`TEXT_COLUMNS`) are conversations; ``error`` naming ``where`` when some
    are lists and some are not (TRL's rule: a record is all flat or all conversational)."""
    lists = [c for c in TEXT_COLUMNS if isinstance(record.get(c), list)]
    if not lists:
        return False
    flat = [c for c in TEXT_COLUMNS if c in record and c not in lists]
    if flat:
        raise error(f"{where}: column(s) {', '.join(map(repr, lists))} are lists of messages but "
                    f"{', '.join(map(repr, flat))} not: give every text column as messages, or every one as a string")
    return True


def describe_tokenizer(tokenizer: Any) -> str:
    """The tokenizer's class and ``name_or_path``, for messages."""
    name = getattr(tokenizer, "name_or_path", "")
    return f"{type(tokenizer).__name__}{f' ({name})' if name else ''}"


def check_chat_template(tokenizer: Any, where: str) -> None:
    """:class:`ChatTemplateError` (a :class:`ConfigError`) naming ``where`` and the tokenizer when it has no chat
    template (or is None)."""
    if tokenizer is None:
        raise ChatTemplateError(f"{where}: conversational data needs a tokenizer with a chat template, and none was given; "
                          "give one or flat strings")
    if not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(f"{where}: conversational data needs a tokenizer with a chat template; "
                          f"{describe_tokenizer(tokenizer)} has none: set tokenizer.chat_template or give flat strings")


def _apply(tokenizer: Any, messages: list[dict], where: str, add_generation_prompt: bool) -> str:
    """``tokenizer.apply_chat_template(messages, tokenize=False)``; a template that refuses the conversation (e.g.
    roles that do not alternate) is a :class:`ConfigError` naming ``where``."""
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    except TemplateError as error:
        raise ConfigError(f"{where}: the chat template of {describe_tokenizer(tokenizer)} refuses the conversation: "
                          f"{error}") from None


def render_prompt(messages: Any, tokenizer: Any, where: str) -> str:
    """The prompt text of the conversation ``messages``: its rendering with the template's generation prompt (the
    assistant's header). A malformed message is a :class:`DataError`, a missing template a :class:`ConfigError`, each
    naming ``where``."""
    check_messages(messages, where)
    check_chat_template(tokenizer, where)
    return _apply(tokenizer, messages, where, add_generation_prompt=True)


def render_completion(prompt_messages: Any, completion_messages: Any, tokenizer: Any, where: str) -> tuple[str, str]:
    """``(prompt_text, completion_text)``: :func:`render_prompt` of ``prompt_messages``, and what the rendering of
    ``prompt_messages + completion_messages`` adds after it, cut as the env cuts a response (a trailing EOS token's text
    removed, then whitespace stripped: see the module's docstring). A template that renders the earlier turns
    differently once the completion follows is a :class:`ConfigError` naming ``where``."""
    prompt_text = render_prompt(prompt_messages, tokenizer, where)
    full = _apply(tokenizer, prompt_messages + check_messages(completion_messages, where), where,
                  add_generation_prompt=False)
    if not full.startswith(prompt_text):
        raise ConfigError(f"{where}: the chat template of {describe_tokenizer(tokenizer)} renders the prompt differently "
                          "once the response follows, so the rendering cannot be split into prompt and completion; "
                          "give flat strings instead")
    completion = full[len(prompt_text):].rstrip()
    eos = getattr(tokenizer, "eos_token", None)
    if eos and completion.endswith(eos):
        completion = completion[:-len(eos)]
    return prompt_text, completion.strip()


def render_messages(messages: Any, tokenizer: Any, where: str) -> tuple[str, str]:
    """``(prompt_text, completion_text)`` of an SFT conversation (``messages``): its last message, the assistant's, as
    the completion of the ones before (:func:`render_completion`). A :class:`DataError` naming ``where`` when the last
    message is not the assistant's or none comes before it."""
    check_messages(messages, where)
    if messages[-1]["role"] != ASSISTANT:
        raise DataError(f"{where}: the last message must be the assistant's (the completion to learn), got role "
                        f"{messages[-1]['role']!r}")
    if len(messages) < 2:
        raise DataError(f"{where}: the assistant's message needs a conversation before it (the prompt)")
    return render_completion(messages[:-1], messages[-1:], tokenizer, where)


def render_record(record: dict, tokenizer: Any, where: str) -> dict:
    """A copy of a comparison ``{"prompt", "chosen", "rejected", ...}`` or an unpaired example ``{"prompt",
    "completion", "label", ...}`` whose conversations are rendered to flat text (:func:`render_completion`); a flat
    record is returned as it is. A record with some columns as messages and some as strings is a :class:`DataError`
    naming ``where``; a conversational one without a tokenizer or chat template a :class:`ConfigError`."""
    if not check_all_or_none(record, where):
        return record
    check_chat_template(tokenizer, where)
    responses = [c for c in TEXT_COLUMNS[1:] if c in record]
    rendered = dict(record)
    for column in responses:
        rendered["prompt"], rendered[column] = render_completion(record["prompt"], record[column], tokenizer,
                                                                 f"{where}: column {column!r}")
    return rendered
