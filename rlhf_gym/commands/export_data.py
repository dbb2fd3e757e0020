"""Export a task's SFT demonstrations, comparisons and prompt splits as JSONL and datasets, with a dataset card.

    rlhf-gym export-data --task lists                                   # into data/lists/
    rlhf-gym export-data --task facts --out-dir facts_data --n-demonstrations 1000 --conversational

Writes ``sft.jsonl`` (the demonstrations the task's SFT policy was trained on, regenerated from the build's seed),
``preferences.jsonl`` (the reward model's comparisons, with labeler, annotator, pair type and train/eval split),
``prompts_train.jsonl``, ``prompts_validation.jsonl`` and ``prompts_held_out.jsonl`` (the held-out prompts are for
evaluation only), a ``README.md`` dataset card and, when ``datasets`` is installed (``pip install
'rlhf-gym[datasets]'``), the same tables under ``dataset/`` (``save_to_disk``). In TRL's standard formats by default;
``--conversational`` writes the SFT and preference rows as chat messages (docs/export_data.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlhf_gym.checks import check_positive_options
from rlhf_gym.cli import arg
from rlhf_gym.errors import ConfigError
from rlhf_gym.tasks import task_names


@dataclass
class Args:
    task: str = arg("reviews", "task whose data to export", choices=task_names)
    out_dir: str | None = arg(None, "directory to write (default: data/<task>)")
    n_demonstrations: int | None = arg(None, "write the first N SFT demonstrations (default: all the build trained on)")
    conversational: bool = arg(False, "write SFT and preference rows as chat messages (TRL's conversational format)")
    overwrite: bool = arg(False, "replace the files of a previous export in --out-dir")

    def __post_init__(self) -> None:
        if self.task not in task_names():
            raise ConfigError(f"--task must be one of {', '.join(task_names())}, got {self.task!r}")
        check_positive_options(self, ("n_demonstrations",))


def main(args: Args):
    from rlhf_gym.data_export import export_data

    summary = export_data(args.task, args.out_dir, args.n_demonstrations, args.conversational, args.overwrite)
    print(summary.describe())
    return summary
