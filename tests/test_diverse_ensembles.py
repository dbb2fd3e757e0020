"""Diverse ensembles (``rlhf-gym diverse-ensembles``): which members each kind has, the disagreement measure, and the
quick study end to end with its run store."""

import json

import numpy as np
import pytest

from rlhf_gym.studies import diverse_ensembles as command
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.ensemble import RewardEnsemble
from rlhf_gym.errors import ConfigError
from rlhf_gym.studies.analysis.diversity import disagreement, ensemble_members, stored_samples
from rlhf_gym.proxies import ProxySpec

SIZES, SEEDS = [(32, 1), (64, 2), (128, 3)], [1, 2, 3]


def test_each_kind_differs_in_what_it_says():
    seeds = ensemble_members("seeds", 9000, SIZES, SEEDS)
    assert seeds == [ProxySpec(64, 2, 9000, s) for s in SEEDS]  # the shipped ensemble's recipe
    disjoint = ensemble_members("disjoint", 9000, SIZES, SEEDS)
    slices = [set(range(m.offset, m.offset + m.n_comparisons)) for m in disjoint]
    assert [len(s) for s in slices] == [3000] * 3 and set.union(*slices) == set(range(9000))
    assert all(not a & b for i, a in enumerate(slices) for b in slices[i + 1:])  # no comparison seen twice
    assert [(m.width, m.layers) for m in ensemble_members("sizes", 9000, SIZES, SEEDS)] == SIZES
    mixed = ensemble_members("mixed", 9000, SIZES, SEEDS)
    assert [(m.width, m.layers, m.offset, m.seed) for m in mixed] == [(32, 1, 0, 1), (64, 2, 3000, 2), (128, 3, 6000, 3)]
    with pytest.raises(ConfigError, match="one size per member"):
        ensemble_members("mixed", 9000, SIZES[:2], SEEDS)
    with pytest.raises(ConfigError, match="unknown ensemble kind"):
        ensemble_members("bagged", 9000, SIZES, SEEDS)


def test_disagreement_is_the_between_member_std_of_standardised_scores():
    members = [lambda p, r: np.array([1.0, 2.0]), lambda p, r: np.array([3.0, 2.0])]
    ensemble = RewardEnsemble(members, shifts=[1.0, 0.0], scales=[1.0, 2.0])  # standardised: [0, 1] and [1.5, 1]
    result = disagreement(ensemble, ["x", "y"], ["a", "b"])
    assert result["mean_member_std"] == pytest.approx((0.75 + 0.0) / 2) and result["n"] == 2
    assert disagreement(ensemble, [], [])["n"] == 0


def test_stored_samples_are_collected_once():
    runs = [{"points": [{"samples": [["p", "a"], ["q", "b"]]}, {"samples": [["p", "a"]]}]},
            {"points": [{"samples": [["q", "c"]]}]}]
    assert stored_samples(runs) == [("p", "a"), ("q", "b"), ("q", "c")]


@pytest.mark.slow
def test_quick_study_builds_loadable_ensembles_and_resumes(tmp_path):
    args = parse_dataclass(command.Args, "", ["--quick", "--out-dir", str(tmp_path)])
    result = command.main(args)
    manifest = json.loads((tmp_path / "ensembles" / "mixed" / "ensemble.json").read_text())
    assert [m["spec"]["offset"] for m in manifest["members"]] == [0, 32, 64]  # thirds of the 96 comparisons
    assert all(m["path"].startswith("../../members/") and m["scale"] > 0 for m in manifest["members"])
    assert set(manifest["gold_agreement"]) == {"mean", "worst", "uncertainty"}
    ensemble = RewardEnsemble.from_pretrained(tmp_path / "ensembles" / "mixed", "worst")
    assert ensemble.member_scores(["the food felt"], ["generous !"]).shape == (3, 1)
    assert set(result["rows"]) == {"mixed, mean", "mixed, worst"}
    for objective in ("mean", "worst"):
        run = json.loads((tmp_path / "ppo" / f"mixed_{objective}" / "runs" / "beta0_seed0.json").read_text())
        assert run["config"]["ensemble_objective"] == objective  # PPO against this objective
        assert len(run["points"]) == args.iterations + 1
    spread = result["disagreement"]["mixed"]
    assert spread["sft"]["n"] == args.n_norm_samples and spread["sft"]["mean_member_std"] > 0
    assert (tmp_path / "ensembles.png").read_bytes()[:4] == b"\x89PNG"
    assert "| mixed, worst | 0 |" in (tmp_path / "ensembles.md").read_text()
    assert command.member_jobs(args) == []  # a rerun trains nothing
    stamp = (tmp_path / "ensembles" / "mixed" / "ensemble.json").stat().st_mtime_ns
    assert command.main(args)["rows"] == result["rows"]
    assert (tmp_path / "ensembles" / "mixed" / "ensemble.json").stat().st_mtime_ns == stamp


def test_bad_study_arguments(capsys, tmp_path):
    for argv, message in ((["--kinds", "bagged"], "--kinds must list"), (["--objectives", "median"], "--kinds must list"),
                          (["--kinds", "sizes", "--sizes", "32x1,64x2"], "one size per member"),
                          (["--compare", str(tmp_path)], "is not a sweep store")):
        with pytest.raises(SystemExit):
            parse_dataclass(command.Args, "", argv)
        assert message in capsys.readouterr().err
