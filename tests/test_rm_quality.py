"""rlhf-gym rm-quality: a reward model's agreement with gold by pair type and its probe table."""

import json

import pytest
from helpers import cli_error

from rlhf_gym.cli import run_command
from rlhf_gym.commands.rm_quality import agreement_over_draws, markdown_over_draws, markdown_probes


@pytest.fixture(scope="module")
def shipped_lists_report(tmp_path_factory):
    """The shipped lists proxy's report on two draws of fresh SFT pairs (measured once: it samples 4,000 responses), and
    its output."""
    out = tmp_path_factory.mktemp("rm_quality") / "q.json"
    return run_command("rm-quality", ["--task", "lists", "--n-probe-prompts", "40", "--pair-draws", "2",
                                      "--out", str(out)]), out


def test_the_shipped_lists_proxy_sees_form_and_not_content(shipped_lists_report):
    report, path = shipped_lists_report
    by_type = report["by_type"]
    assert by_type["overall"]["pairs"] == report["n_pairs"] and by_type["overall"]["agreement"] == report["gold_agreement"]
    # the outside check's finding, measured on the shipped v0 proxy: form right, content at chance
    assert by_type["length_form"]["agreement"] > 0.9
    assert all(by_type[f]["agreement"] < 0.7 for f in ("other_category", "excluded_member", "repeated_item"))
    assert set(report["probes"]) == {"other_category", "excluded_member", "repeated_item"}
    assert report["probes"]["other_category"]["prompts"] == 40 and report["probes"]["other_category"]["gold_margin"] > 0
    assert report["form_probe"]["prompts"] == 40 and report["form_probe"]["gold_margin"] > 0
    assert json.loads(path.read_text())["by_type"] == by_type
    # the first draw is the build's pairs (the report's figures); the second is another draw of the same prompts
    first, second = report["draws"]
    assert first == by_type and second["overall"]["pairs"] != first["overall"]["pairs"]
    assert report["over_draws"]["overall"]["agreement"] == pytest.approx(
        (first["overall"]["agreement"] + second["overall"]["agreement"]) / 2)


def test_agreement_over_draws_by_hand():
    def draw(overall, family):
        return {"by_type": {"overall": {"agreement": overall, "pairs": 100, "share": 1.0},
                            "repeated_item": {"agreement": family, "pairs": 0 if family is None else 10, "share": 0.1},
                            "gold_ties": 7}}

    summary = agreement_over_draws([draw(0.7, 0.5), draw(0.8, None)])
    # 0.7 and 0.8: sample std 0.0707, t_{0.975, 1} = 12.706, half-width 12.706 * 0.0707 / sqrt(2) = 0.6353
    assert summary["overall"]["agreement"] == pytest.approx(0.75) and summary["overall"]["draws"] == 2
    assert summary["overall"]["half_width"] == pytest.approx(0.6353) and summary["overall"]["pairs"] == 200
    # a family without pairs in one draw is averaged over the draws that had some: one here, so no interval
    assert summary["repeated_item"] == {"agreement": 0.5, "half_width": None, "draws": 1, "pairs": 10}
    assert markdown_over_draws(summary).splitlines()[2:] == ["| overall | 2 | 200 | 0.750 ± 0.635 |",
                                                             "| repeated_item | 1 | 10 | 0.500 |"]


def test_a_task_without_families_is_refused(capsys):
    assert cli_error(capsys, "rm-quality", ["--task", "reviews"]) == (
        "error: task 'reviews' has no content-error families to split by (lists, facts, describe have)")


def test_the_probe_table_by_hand():
    table = markdown_probes({"a": {"prompts": 2, "prefers_ceiling": 0.5, "margin": 0.25, "gold_margin": 1.0},
                             "b": {"prompts": 0, "prefers_ceiling": None, "margin": None, "gold_margin": None}})
    assert table.splitlines()[2:] == ["| a | 2 | 0.500 | 0.250 | 1.000 |", "| b | 0 | — | — | — |"]


def test_policy_gives_the_pairs_of_that_policy_s_samples(shipped_lists_report, tmp_path, capsys):
    import torch
    from transformers import GPT2LMHeadModel

    from rlhf_gym.gpt2 import gpt2_config
    from rlhf_gym.tasks import world_of

    tokenizer = world_of("lists").tokenizer()
    torch.manual_seed(0)
    GPT2LMHeadModel(gpt2_config(tokenizer, 16, 1)).save_pretrained(tmp_path / "untrained")  # samples: random words
    sft = shipped_lists_report[0]
    untrained = run_command("rm-quality", ["--task", "lists", "--n-probe-prompts", "40",
                                           "--policy", str(tmp_path / "untrained")])
    out = capsys.readouterr().out
    assert f"pairs of {tmp_path / 'untrained'}'s samples" in out
    assert "| length_form |" in out and "| other_category | 40 |" in out
    assert untrained["policy"] == str(tmp_path / "untrained") and sft["policy"].endswith("policy")
    # random words are almost never well-formed, so almost every pair differs in form alone or is a gold tie
    assert untrained["n_pairs"] != sft["n_pairs"]
    assert untrained["by_type"]["length_form"]["share"] > 0.9 > sft["by_type"]["length_form"]["share"]
    assert untrained["probes"] == sft["probes"]  # the probe table does not sample: the same with any policy


def test_a_policy_of_another_task_is_refused(capsys):
    from rlhf_gym.tasks import load_task

    reviews_policy = str(load_task("reviews").policy_dir)
    assert cli_error(capsys, "rm-quality", ["--task", "lists", "--policy", reviews_policy]).startswith(
        f"error: --policy {reviews_policy}: a policy of ")
