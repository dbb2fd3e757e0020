"""``rlhf-gym export-data``: a task's demonstrations, comparisons and prompt splits, as the build and the reward model
used them, in TRL's standard and conversational formats, with a datasets copy and a dataset card."""

import json
import random
import sys
from collections import defaultdict

import pytest

from rlhf_gym.cli import run_command
from rlhf_gym.commands.export_data import Args
from rlhf_gym.data_export import PROMPT_FILES, export_data, pairs_section, preference_row
from rlhf_gym.errors import ConfigError
from rlhf_gym.files import read_json
from rlhf_gym.jsonl import read_jsonl
from rlhf_gym.preferences import load_preferences
from rlhf_gym.tasks import load_task, task_names, world_of
from rlhf_gym.tasks.building import BuildConfig

N = 50


def rows(directory, name):
    return list(read_jsonl(directory / name))


@pytest.fixture(scope="module")
def lists_export(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("export") / "lists"
    return export_data("lists", out_dir, n_demonstrations=N), out_dir


@pytest.fixture(scope="module")
def lists_chat_export(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("export") / "lists_chat"
    return export_data("lists", out_dir, n_demonstrations=N, conversational=True), out_dir


def test_prompt_and_preference_counts_are_the_tasks_splits(lists_export):
    summary, out_dir = lists_export
    task = load_task("lists")
    prompts = {split: [r["prompt"] for r in rows(out_dir, name)] for split, name in PROMPT_FILES.items()}
    assert prompts == {"train": task.tuning_prompts, "validation": task.validation_prompts, "held_out": task.eval_prompts}
    preferences = rows(out_dir, "preferences.jsonl")
    by_split = defaultdict(list)
    for row in preferences:
        by_split[row["split"]].append(row)
    trained = task.reward_model_comparisons()
    assert [(r["prompt"], r["chosen"], r["rejected"]) for r in trained] == [
        (r["prompt"], r["chosen"][1:], r["rejected"][1:]) for r in by_split["train"]]
    recorded = read_json(task.reward_dir / "reward_metadata.json")
    assert (len(by_split["train"]), len(by_split["eval"])) == (recorded["n_train"], recorded["n_eval"])
    assert len(preferences) == len(load_preferences(task.artifacts_dir / "preferences.jsonl"))
    assert not {r["prompt"] for r in preferences} & set(task.eval_prompts)  # held-out prompts: evaluation only
    assert summary.counts == {"sft.jsonl": N, "preferences.jsonl": len(preferences),
                              **{name: len(prompts[split]) for split, name in PROMPT_FILES.items()}}


def test_demonstrations_are_the_builds_generator_texts(lists_export):
    _, out_dir = lists_export
    world, build = world_of("lists"), load_task("lists").metadata["build_config"]
    rng = random.Random(build["seed"])
    expected = [" ".join(world.sample_text(rng)) for _ in range(N)]  # as building.build joins them
    assert [r["prompt"] + r["completion"] for r in rows(out_dir, "sft.jsonl")] == expected


def test_labeler_pool_member_and_pair_type_are_carried(lists_export):
    _, out_dir = lists_export
    preferences = rows(out_dir, "preferences.jsonl")
    world = world_of("lists")
    weights = load_task("lists").metadata["build_config"]["annotator_bias_weights"]
    assert {r["labeler"] for r in preferences} == {"simulated-pool"}
    assert {r["pair_type"] for r in preferences} == {"sft"}  # the shipped records carry none: SFT pairs
    assert {r["annotator"] for r in preferences} == {f"simulated-pool/w={w:g}" for w in weights}
    longer_wins = defaultdict(list)  # the members overrate length by their weight: the heavier, the more often
    for r in preferences:
        difference = world.annotator_bias(r["prompt"], r["chosen"]) - world.annotator_bias(r["prompt"], r["rejected"])
        if difference:
            longer_wins[r["annotator"]].append(difference > 0)
    shares = [sum(longer_wins[f"simulated-pool/w={w:g}"]) / len(longer_wins[f"simulated-pool/w={w:g}"]) for w in weights]
    assert shares == sorted(shares) and shares[-1] - shares[0] > 0.05
    record = {"prompt": "p", "chosen": "a", "rejected": "b", "labeler": "ann", "pair_type": "counterfactual:x"}
    assert preference_row(record, "eval", "ann")["pair_type"] == "counterfactual:x"


def test_conversational_rows_hold_the_same_texts(lists_export, lists_chat_export):
    (_, standard), (summary, chat) = lists_export, lists_chat_export
    assert summary.conversational
    for plain, messages in zip(rows(standard, "sft.jsonl"), rows(chat, "sft.jsonl"), strict=True):
        assert messages == {"messages": [{"role": "user", "content": plain["prompt"]},
                                         {"role": "assistant", "content": plain["completion"][1:]}]}
    for plain, chat_row in zip(rows(standard, "preferences.jsonl"), rows(chat, "preferences.jsonl"), strict=True):
        assert chat_row["prompt"] == [{"role": "user", "content": plain["prompt"]}]
        for side in ("chosen", "rejected"):
            assert chat_row[side] == [{"role": "assistant", "content": plain[side][1:]}]
        assert {k: v for k, v in chat_row.items() if k not in ("prompt", "chosen", "rejected")} == {
            k: v for k, v in plain.items() if k not in ("prompt", "chosen", "rejected")}
    assert rows(chat, "prompts_held_out.jsonl") == rows(standard, "prompts_held_out.jsonl")


def test_datasets_copy_has_the_same_rows(lists_export, lists_chat_export):
    datasets = pytest.importorskip("datasets")
    for summary, out_dir in (lists_export, lists_chat_export):
        assert summary.datasets_saved
        assert datasets.load_from_disk(str(out_dir / "dataset" / "sft"))["train"].to_list() == rows(out_dir, "sft.jsonl")
        preferences = datasets.load_from_disk(str(out_dir / "dataset" / "preferences"))
        assert set(preferences) == {"train", "eval"}
        for split, dataset in preferences.items():
            assert dataset.to_list() == [{k: v for k, v in r.items() if k != "split"}
                                         for r in rows(out_dir, "preferences.jsonl") if r["split"] == split]
        prompts = datasets.load_from_disk(str(out_dir / "dataset" / "prompts"))
        assert {split: prompts[split].to_list() for split in prompts} == {
            split: rows(out_dir, name) for split, name in PROMPT_FILES.items()}


def test_dataset_card_documents_gold_annotators_splits_and_license(lists_export):
    _, out_dir = lists_export
    card = (out_dir / "README.md").read_text()
    front_matter = card.split("---\n")[1]
    assert "license: mit" in front_matter and "config_name: preferences" in front_matter
    assert "path: prompts_held_out.jsonl" in front_matter
    assert "G(x, y) = ( c - 0.5 * max(0, n - k) - 1.0 * n_invalid - 0.5 * (k - c) ) / k" in card  # the gold module's
    assert "list length in items" in card and "(0.05, 0.15, 0.25)" in card and "temperature 0.25" in card
    assert "probability 0.05" in card and "for evaluation only" in card and "MIT" in card


def test_an_existing_export_is_replaced_only_with_overwrite(tmp_path):
    out_dir = tmp_path / "reviews"
    out_dir.mkdir()
    (out_dir / "sft.jsonl").write_text("stale\n")
    with pytest.raises(ConfigError, match=f"{out_dir} is not empty; pass --overwrite"):
        export_data("reviews", out_dir, n_demonstrations=N)
    assert (out_dir / "sft.jsonl").read_text() == "stale\n"
    export_data("reviews", out_dir, n_demonstrations=N, overwrite=True)
    assert len(rows(out_dir, "sft.jsonl")) == N


def test_the_command_prints_counts_and_without_datasets_still_writes_the_jsonl(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` now fails as if it were not installed
    out_dir = tmp_path / "out"
    run_command("export-data", ["--task", "reviews", "--out-dir", str(out_dir), "--n-demonstrations", str(N)])
    printed = capsys.readouterr().out
    held_out = len(load_task("reviews").eval_prompts)
    assert f"sft.jsonl                      {N} demonstrations (of the build's 30000)" in printed
    assert f"{held_out} prompts (for evaluation only" in printed and "pip install 'rlhf-gym[datasets]'" in printed
    assert not (out_dir / "dataset").exists() and len(rows(out_dir, "prompts_held_out.jsonl")) == held_out
    assert json.loads((out_dir / "sft.jsonl").read_text().splitlines()[0])["completion"].startswith(" ")


def test_an_unknown_task_is_a_config_error_naming_the_known_tasks(tmp_path):
    for make in (lambda: export_data("nope", tmp_path), lambda: Args(task="nope")):
        with pytest.raises(ConfigError) as error:
            make()
        assert "'nope'" in str(error.value) and all(name in str(error.value) for name in task_names())
    assert not any(tmp_path.iterdir())


def test_the_card_names_cut_pairs_only_when_the_build_made_them():
    rm_config = {"eval_fraction": 0.1, "seed": 0}
    assert "`cut`" in pairs_section(BuildConfig(pairs="mixed", cut_share=0.2), rm_config)
    assert "probability 0.2" in pairs_section(BuildConfig(pairs="mixed", cut_share=0.2), rm_config)
    assert "empty response" not in pairs_section(BuildConfig(pairs="mixed", cut_share=0.2), rm_config)
    assert "(or the empty response)" in pairs_section(BuildConfig(pairs="mixed", cut_share=0.2, cut_empty=True), rm_config)
    assert "suffix" not in pairs_section(BuildConfig(pairs="mixed", cut_share=0.2), rm_config)
    assert "or an ill-formed suffix of itself" in pairs_section(BuildConfig(pairs="mixed", cut_share=0.2, cut_ends=True),
                                                                 rm_config)
    assert "`cut`" not in pairs_section(BuildConfig(pairs="mixed"), rm_config)
