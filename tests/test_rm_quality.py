"""rlhf-gym rm-quality: a reward model's agreement with gold by pair type and its probe table."""

import json

from helpers import cli_error

from rlhf_gym.cli import run_command
from rlhf_gym.commands.rm_quality import markdown_probes


def test_the_shipped_lists_proxy_sees_form_and_not_content(tmp_path, capsys):
    report = run_command("rm-quality", ["--task", "lists", "--n-probe-prompts", "40", "--out", str(tmp_path / "q.json")])
    out = capsys.readouterr().out
    by_type = report["by_type"]
    assert by_type["overall"]["pairs"] == report["n_pairs"] and by_type["overall"]["agreement"] == report["gold_agreement"]
    # the outside check's finding, measured on the shipped v0 proxy: form right, content at chance
    assert by_type["length_form"]["agreement"] > 0.9
    assert all(by_type[f]["agreement"] < 0.7 for f in ("other_category", "excluded_member", "repeated_item"))
    assert set(report["probes"]) == {"other_category", "excluded_member", "repeated_item"}
    assert report["probes"]["other_category"]["prompts"] == 40 and report["probes"]["other_category"]["gold_margin"] > 0
    assert json.loads((tmp_path / "q.json").read_text())["by_type"] == by_type
    assert "| length_form |" in out and "| other_category | 40 |" in out


def test_a_task_without_families_is_refused(capsys):
    assert cli_error(capsys, "rm-quality", ["--task", "reviews"]) == (
        "error: task 'reviews' has no content-error families to split by (lists, facts, describe have)")


def test_the_probe_table_by_hand():
    table = markdown_probes({"a": {"prompts": 2, "prefers_ceiling": 0.5, "margin": 0.25, "gold_margin": 1.0},
                             "b": {"prompts": 0, "prefers_ceiling": None, "margin": None, "gold_margin": None}})
    assert table.splitlines()[2:] == ["| a | 2 | 0.500 | 0.250 | 1.000 |", "| b | 0 | — | — | — |"]
