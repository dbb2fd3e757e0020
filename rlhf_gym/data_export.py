"""A task's data as portable files: SFT demonstrations, comparisons and prompt splits, with a dataset card.

:func:`export_data` writes, for one task, JSONL files in TRL's formats (prompt-completion and preference, or with
``conversational=True`` chat messages), the same tables as a Hugging Face ``datasets`` copy when that package is
installed, and a ``README.md`` dataset card (gold reward, annotators, pair sampling, splits, license):

* ``sft.jsonl``: the demonstrations the task's SFT policy was trained on, regenerated from the build's seed;
* ``preferences.jsonl``: the comparisons of the task's reward model, with labeler, pool member, pair type and split;
* ``prompts_train.jsonl``, ``prompts_validation.jsonl``, ``prompts_held_out.jsonl``: the prompt splits (the held-out
  prompts are for evaluation only).

In the standard format a completion, chosen or rejected response starts with a space: TRL tokenises
``prompt + completion``, which is then the text the task's models read (they join prompt and response with a space).
"""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

from . import __version__
from .errors import ConfigError, DataError
from .files import atomic_write_text, staged_directory
from .jsonl import write_jsonl
from .labelers import AnnotatorPool, Labeler
from .pairing import SFT_PAIR
from .sft_data import task_demonstrations
from .tasks import world_of
from .tasks.base import VALIDATION_PROMPTS, Task
from .tasks.building import BuildConfig, SeedStream, annotator
from .tasks.world import EVAL_FRACTION, SPLIT_SEED, TaskWorld

SFT_FILE, PREFERENCES_FILE, CARD_FILE, DATASET_DIR = "sft.jsonl", "preferences.jsonl", "README.md", "dataset"
PROMPT_FILES = {"train": "prompts_train.jsonl", "validation": "prompts_validation.jsonl",
                "held_out": "prompts_held_out.jsonl"}
"""Prompt split -> its file (also the split's name in the card's ``configs`` and the ``datasets`` copy)."""
PREFERENCE_SPLITS = ("train", "eval")
"""The reward model's sides of the comparisons (:func:`~rlhf_gym.reward_training.split_records`)."""
DEFAULT_OUT_DIR = Path("data")
"""``export_data`` writes into ``data/<task>`` unless told otherwise."""
HELD_OUT_NOTE = "for evaluation only: never train or tune on them"


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_data` wrote.

    :param task: task id.
    :param out_dir: the directory written.
    :param counts: rows per JSONL file.
    :param preference_splits: comparisons per reward-model split (``train``, ``eval``).
    :param build_demonstrations: the SFT texts the task's build trained on (``sft.jsonl`` holds the first ones).
    :param datasets_saved: whether the ``datasets`` copy was written (the ``datasets`` package is optional).
    :param conversational: whether SFT and preference rows are chat messages.
    """

    task: str
    out_dir: Path
    counts: dict[str, int]
    preference_splits: dict[str, int]
    build_demonstrations: int
    datasets_saved: bool
    conversational: bool

    def describe(self) -> str:
        """The command's printout: rows per file and where they are."""
        counts, splits = self.counts, self.preference_splits
        lines = [f"exported task {self.task!r} to {self.out_dir}"
                 f"{' (conversational format)' if self.conversational else ''}:",
                 f"  {SFT_FILE:<26}{counts[SFT_FILE]:>7} demonstrations (of the build's {self.build_demonstrations})",
                 f"  {PREFERENCES_FILE:<26}{counts[PREFERENCES_FILE]:>7} comparisons ({splits['train']} train, "
                 f"{splits['eval']} eval: the reward model's split)"]
        lines += [f"  {name:<26}{counts[name]:>7} prompts" + (f" ({HELD_OUT_NOTE})" if split == "held_out" else "")
                  for split, name in PROMPT_FILES.items()]
        lines.append(f"  {CARD_FILE:<26}        dataset card")
        if self.datasets_saved:
            lines.append(f"  {DATASET_DIR + '/':<26}        datasets copy: load_from_disk('{self.out_dir / DATASET_DIR}/sft') "
                         "(also preferences, prompts)")
        else:
            lines.append(f"  {DATASET_DIR + '/':<26}        not written: the datasets copy needs "
                         "pip install 'rlhf-gym[datasets]'")
        return "\n".join(lines)


def recorded_build_config(world: TaskWorld, metadata: dict) -> BuildConfig:
    """The build settings a task's ``metadata.json`` recorded (``build_config``), the world's defaults for the rest."""
    known = {f.name for f in fields(BuildConfig)}
    recorded = {k: tuple(v) if isinstance(v, list) else v for k, v in metadata.get("build_config", {}).items() if k in known}
    return BuildConfig.for_world(world, **recorded)


def demonstrations(world: TaskWorld, config: BuildConfig, n: int | None = None) -> list[dict]:
    """The first ``n`` (default: all) SFT texts of a build as prompt-completion records, the completion starting with the
    space that joins it to the prompt: :func:`rlhf_gym.sft_data.task_demonstrations` with the build's seed, the texts
    :func:`rlhf_gym.tasks.building.build` trains on.

    :raises DataError: when the build reused an SFT policy (``sft_from``): its texts are another build's.
    """
    if config.sft_from is not None:
        raise DataError(f"task {world.name!r}: its build reused the SFT policy {config.sft_from}, whose training texts "
                        "it did not record")
    count = config.n_sft_texts if n is None else min(n, config.n_sft_texts)
    return [demonstration.record for demonstration in task_demonstrations(world, count, config.seed)]


def sft_row(demonstration: dict, conversational: bool = False) -> dict:
    """A prompt-completion record as it is, or as ``messages``: a user turn (the prompt), an assistant turn (the
    completion without its joining space)."""
    if not conversational:
        return demonstration
    return {"messages": [{"role": "user", "content": demonstration["prompt"]},
                         {"role": "assistant", "content": demonstration["completion"].removeprefix(" ")}]}


def annotator_name(labeler: Labeler, record: dict) -> str | None:
    """Who judged ``record``: for a record of the build's :class:`~rlhf_gym.labelers.AnnotatorPool`, its member
    (e.g. ``simulated-pool/w=0.15``), drawn from ``(seed, pair_id)`` as the collection drew it; else its ``labeler``."""
    if isinstance(labeler, AnnotatorPool) and record.get("labeler") == labeler.name and "pair_id" in record:
        labeler.seed_pair(record["pair_id"])
        return labeler.current.name
    return record.get("labeler")


def preference_row(record: dict, split: str, annotator_id: str | None, conversational: bool = False) -> dict:
    """One comparison in TRL's preference format (or as messages) with its pair id, labeler, annotator, pair type
    (``sft`` when the record has none) and reward-model split."""
    if conversational:
        texts = {"prompt": [{"role": "user", "content": record["prompt"]}],
                 **{side: [{"role": "assistant", "content": record[side]}] for side in ("chosen", "rejected")}}
    else:
        texts = {"prompt": record["prompt"], "chosen": f" {record['chosen']}", "rejected": f" {record['rejected']}"}
    return {**texts, "pair_id": record.get("pair_id"), "labeler": record.get("labeler"), "annotator": annotator_id,
            "pair_type": record.get("pair_type", SFT_PAIR), "split": split}


def preference_rows(labeler: Labeler, splits: dict[str, list[dict]], conversational: bool = False) -> list[dict]:
    """Every comparison of ``splits`` as a :func:`preference_row`, the train side first."""
    return [preference_row(record, split, annotator_name(labeler, record), conversational)
            for split, records in splits.items() for record in records]


def prompt_tables(task: Task) -> dict[str, list[dict]]:
    """``{file: [{"prompt"}, ...]}`` of the prompt splits: train (``task.tuning_prompts``), validation
    (``task.validation_prompts``) and held-out (``task.eval_prompts``, for evaluation only)."""
    splits = {"train": task.tuning_prompts, "validation": task.validation_prompts, "held_out": task.eval_prompts}
    return {PROMPT_FILES[split]: [{"prompt": p} for p in prompts] for split, prompts in splits.items()}


def dataset_configs(tables: dict[str, list[dict]]) -> dict[str, dict[str, list[dict]]]:
    """The ``datasets`` copy's layout: config -> split -> rows (``sft``: train; ``preferences``: train and eval, without
    the ``split`` column; ``prompts``: train, validation and held_out)."""
    preferences = {split: [{k: v for k, v in row.items() if k != "split"} for row in tables[PREFERENCES_FILE]
                           if row["split"] == split] for split in PREFERENCE_SPLITS}
    return {"sft": {"train": tables[SFT_FILE]}, "preferences": preferences,
            "prompts": {split: tables[name] for split, name in PROMPT_FILES.items()}}


def save_datasets(tables: dict[str, list[dict]], directory: Path) -> bool:
    """Save :func:`dataset_configs` as one ``DatasetDict`` per config under ``directory`` (``directory/sft``...),
    written aside and renamed into place; False, with any previous copy removed, when ``datasets`` is not installed."""
    try:
        import datasets
    except ImportError:
        shutil.rmtree(directory, ignore_errors=True)  # a previous export's copy would not match the new files
        return False
    bars_were_on = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # a bar per split would bury the summary
    try:
        with staged_directory(directory, None, "export") as staging:  # the command's --overwrite gates a replacement
            for config, splits in dataset_configs(tables).items():
                dataset = datasets.DatasetDict({split: datasets.Dataset.from_list(rows) for split, rows in splits.items()})
                dataset.save_to_disk(str(staging / config))
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
    return True


def markdown_docstring(docstring: str) -> str:
    """A reST module docstring as Markdown: roles (``:func:`x```) and literals as code spans, ``::`` as ``:``."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", inspect.cleandoc(docstring))
    return re.sub(r"``([^`]+)``", r"`\1`", text).replace("::\n", ":\n")


def annotator_section(world: TaskWorld, config: BuildConfig) -> str:
    """The card's account of the simulated annotators, from the build's settings and the world's bias."""
    noise = (f"Bradley–Terry temperature {config.annotator_temperature} (`P(a > b) = sigmoid((U(x, a) - U(x, b)) / "
             f"{config.annotator_temperature})`), then the label flipped with probability {config.annotator_flip_rate} "
             f"(a careless click). Pairs of equal utility: `{config.annotator_ties}` "
             "(`coin`: a random label; `label`: recorded as a tie, which this export leaves out as training did).")
    if not config.annotator_bias_weights:
        return f"One unbiased simulated annotator (`labeler` `simulated`) with utility `U = G` (the gold reward): {noise}"
    weights = ", ".join(f"{w:g}" for w in config.annotator_bias_weights)
    return (f"A pool of {len(config.annotator_bias_weights)} simulated annotators (`labeler` `simulated-pool`), member "
            f"`i` with utility `U = G + w_i * b`, where `b` is the annotators' bias, **{world.bias_name}**, and "
            f"`w_i` in ({weights}): they overrate it, and the gold reward does not (the task's designed hack). Each "
            "pair is judged by one member drawn from the build's seed and the pair id; the `annotator` column names it "
            f"(`simulated-pool/w=<w_i>`). Every member: {noise}")


def pairs_section(config: BuildConfig, rm_config: dict) -> str:
    """The card's account of how the comparisons were sampled and split."""
    text = (f"Comparison `pair_id = k` pairs two samples of the task's SFT policy (temperature 1, at most "
            f"{config.max_new_tokens} tokens each) for prompt `k mod n` of the `n` train and validation prompts, "
            f"shuffled with seed {config.seed_for(SeedStream.COMPARISON_PROMPTS)} (never a held-out prompt); a pair where "
            f"a sample was empty was left out (gaps in `pair_id`). {config.n_comparisons} pairs were sampled; "
            "`pair_type` is `sft` for such a pair.")
    if config.pairs != SFT_PAIR:
        text += (f" The build's pairing was `{config.pairs}`: the second response may instead be the first with one "
                 "content error of the task added (same length, form and bias), `pair_type` "
                 "`counterfactual:<family>`.")
    if config.contrast_share:
        text += (f" With probability {config.contrast_share} such a pair instead put the first response against its "
                 "words in another order that gold scores differently (the task's contrasts), `pair_type` "
                 "`contrast:<name>`.")
    if config.cut_share:
        text += (f" With probability {config.cut_share} an ordinary pair instead put the first response against an "
                 "ill-formed prefix of itself, as a response cut off by the budget reads"
                 f"{' (or the empty response)' if config.cut_empty else ''}"
                 f"{' or an ill-formed suffix of itself' if config.cut_ends else ''}: `pair_type` `cut`.")
    if config.garble_share:
        text += (f" With probability {config.garble_share} an ordinary pair that was not cut instead put the first "
                 "response against itself with one word swapped with its neighbour, repeated, dropped or replaced, so "
                 "that it is ill-formed: `pair_type` `garbled`.")
    return text + (f"\n\nThe `split` column is the reward model's: `eval` holds {rm_config['eval_fraction']:.0%} of the "
                   f"distinct pairs (seed {rm_config['seed']}, a pair and its repeats on one side), `train` the rest "
                   "(what the task's reward model, and DPO by default, trained on).")


def card_front_matter(task_name: str) -> str:
    """The card's YAML header: license, task categories, tags and the ``configs`` that map files to splits."""
    prompt_files = "".join(f"  - split: {split}\n    path: {name}\n" for split, name in PROMPT_FILES.items())
    return (f"---\nlicense: mit\nlanguage:\n- en\npretty_name: rlhf-gym {task_name} task\ntask_categories:\n"
            "- text-generation\n- reinforcement-learning\ntags:\n- rlhf\n- preference\n- synthetic\n"
            f"configs:\n- config_name: sft\n  data_files:\n  - split: train\n    path: {SFT_FILE}\n"
            f"- config_name: preferences\n  data_files:\n  - split: train\n    path: {PREFERENCES_FILE}\n"
            f"- config_name: prompts\n  data_files:\n{prompt_files}---\n")


def files_section(summary: ExportSummary) -> str:
    """The card's table of files, rows and fields."""
    counts = summary.counts
    if summary.conversational:
        sft = "`messages`: a user turn (the prompt) and an assistant turn (the response)"
        pref = ("`prompt` (a user turn), `chosen`, `rejected` (an assistant turn each), `pair_id`, `labeler`, `annotator`, "
                "`pair_type`, `split`")
    else:
        sft = "`prompt`, `completion` (the response, with a leading space)"
        pref = ("`prompt`, `chosen`, `rejected` (responses with a leading space), `pair_id`, `labeler`, `annotator`, "
                "`pair_type`, `split` (`train` or `eval`)")
    rows = [(SFT_FILE, counts[SFT_FILE], f"{sft}: SFT demonstrations"), (PREFERENCES_FILE, counts[PREFERENCES_FILE], pref)]
    rows += [(name, counts[name], "`prompt`" + (f" — **{HELD_OUT_NOTE}**" if split == "held_out" else ""))
             for split, name in PROMPT_FILES.items()]
    table = "\n".join(f"| `{name}` | {n} | {fields_} |" for name, n, fields_ in rows)
    return f"| file | rows | fields |\n|---|---|---|\n{table}"


def dataset_card(summary: ExportSummary, world: TaskWorld, config: BuildConfig, rm_config: dict) -> str:
    """The export's ``README.md``: YAML front matter as Hugging Face dataset cards have, then the prose."""
    task_doc = importlib.import_module(f"rlhf_gym.tasks.{world.name}.task").__doc__ or ""
    gold_doc = inspect.getmodule(world.gold_reward).__doc__ or ""
    standard = ("" if summary.conversational else
                " In these files a response starts with a space, so that `prompt + completion` (TRL's concatenation) "
                "is the text the task's models read; rlhf-gym's own loaders accept the files as they are.")
    sections = [
        card_front_matter(world.name),
        f"# rlhf-gym `{world.name}` task data\n\nThe data of the `{world.name}` task of "
        f"rlhf-gym {__version__}: a procedurally generated language, so every text is synthetic. "
        f"Written by `rlhf-gym export-data --task {world.name}`; the same tables as Hugging Face datasets (one "
        f"`DatasetDict` per config) are under `{DATASET_DIR}/` when the `datasets` package was installed."
        f"\n\n{markdown_docstring(task_doc)}",
        f"## Files\n\n{files_section(summary)}\n\nThe files are in TRL's "
        f"{'conversational' if summary.conversational else 'standard'} formats.{standard}",
        f"## SFT demonstrations\n\nThe first {summary.counts[SFT_FILE]} of the {summary.build_demonstrations} texts the "
        f"task's SFT policy was trained on: the task's generator drawn from "
        f"`random.Random({config.seed})`. The generator draws its prompts from the whole language, so held-out "
        "prompts occur among them, as they did in the SFT policy's training.",
        f"## Gold reward\n\nThe hidden true reward `G(x, y)` the annotators judge by (from the task's gold module):\n\n"
        f"{markdown_docstring(gold_doc)}",
        f"## Annotators\n\n{annotator_section(world, config)}",
        f"## How pairs were sampled\n\n{pairs_section(config, rm_config)}",
        f"## Prompt splits\n\nThe task's prompts are split once (seed {SPLIT_SEED}): {EVAL_FRACTION:.0%} held out, the "
        f"rest train. `validation` is the last {VALIDATION_PROMPTS} train prompts (what tuning scores settings on), "
        "`train` the others. The held-out prompts (`prompts_held_out.jsonl`, split `held_out`) are "
        f"**{HELD_OUT_NOTE}**: rlhf-gym reports every method's gold reward on them.",
        f"## Loading\n\nThe JSONL files load anywhere; the `{DATASET_DIR}/` copy keeps each config's splits:\n\n"
        "```python\nfrom datasets import load_dataset, load_from_disk\n\n"
        f"sft = load_dataset(\"json\", data_files=\"{SFT_FILE}\", split=\"train\")\n"
        f"preferences = load_from_disk(\"{DATASET_DIR}/preferences\")  # DatasetDict: train, eval\n"
        f"prompts = load_from_disk(\"{DATASET_DIR}/prompts\")  # DatasetDict: train, validation, held_out\n```",
        "## License\n\nMIT, as rlhf-gym's code: the data are generated by the repository's code and carry its license.",
    ]
    return "\n\n".join(section.rstrip() for section in sections) + "\n"


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """A :class:`ConfigError` naming ``out_dir`` when it is a file, or holds something and ``overwrite`` is off."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out-dir {out_dir} is a file, not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ConfigError(f"--out-dir {out_dir} is not empty; pass --overwrite to replace its export")


def export_data(task_name: str = "reviews", out_dir: str | Path | None = None, n_demonstrations: int | None = None,
                conversational: bool = False, overwrite: bool = False) -> ExportSummary:
    """Write the task's SFT demonstrations, comparisons, prompt splits, ``datasets`` copy and dataset card.

    :param task_name: task id (a :class:`ConfigError` lists the known ones).
    :param out_dir: where to write (default ``data/<task>``).
    :param n_demonstrations: write the first this many SFT demonstrations (default: all the build trained on).
    :param conversational: SFT and preference rows as chat messages (TRL's conversational format).
    :param overwrite: replace the files of a previous export; without it a non-empty ``out_dir`` is refused.
    """
    world = world_of(task_name)
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_OUT_DIR / task_name
    check_out_dir(out_dir, overwrite)
    task = world.task()
    config, rm_config = recorded_build_config(world, task.metadata), task.reward_model_config
    splits = dict(zip(PREFERENCE_SPLITS, task.reward_model_split()))
    tables = {SFT_FILE: [sft_row(d, conversational) for d in demonstrations(world, config, n_demonstrations)],
              PREFERENCES_FILE: preference_rows(annotator(world, config), splits, conversational),
              **prompt_tables(task)}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        write_jsonl(out_dir / name, rows)  # each written aside and renamed into place
    datasets_saved = save_datasets(tables, out_dir / DATASET_DIR)
    summary = ExportSummary(task=task_name, out_dir=out_dir, counts={name: len(rows) for name, rows in tables.items()},
                            preference_splits={split: len(records) for split, records in splits.items()},
                            build_demonstrations=config.n_sft_texts, datasets_saved=datasets_saved,
                            conversational=conversational)
    atomic_write_text(out_dir / CARD_FILE, dataset_card(summary, world, config, rm_config))
    return summary
