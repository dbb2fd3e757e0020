"""Beta sweep (quick mode, resume), the Gao et al. fit and the best-of-n estimator."""

import itertools
import json

import numpy as np
import pytest

from rlhf_gym.cli import parse_dataclass
from rlhf_gym.best_of_n import best_of_n_curve, best_of_n_kl, best_of_n_weights, interpolate_best_of_n
from rlhf_gym.studies.analysis.gao import fit_gao, gao_rl
from rlhf_gym.studies.analysis.run_store import run_path
from rlhf_gym.studies import sweep as command

POINT_KEYS = {"iteration", "timesteps", "proxy_reward", "gold_reward", "kl", "well_formed", "response_length", "samples"}


def test_quick_sweep_writes_json_png_markdown_and_resumes(tmp_path):
    script = command
    args = parse_dataclass(script.Args, "", ["--quick", "--out-dir", str(tmp_path)])
    result = script.main(args)
    assert [r["beta"] for r in result["summary"]] == [0.0, 0.1]
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert {"args", "summary", "best_of_n", "gao_fit_smallest_beta", "gao_fit_all_betas", "runs"} <= set(saved)
    assert len(saved["runs"]) == 2
    for run in saved["runs"]:
        assert [p["iteration"] for p in run["points"]] == list(range(len(run["points"])))  # eval every iteration
        assert len(run["points"]) == args.iterations + 1  # before training and after each of exactly two iterations
        assert POINT_KEYS <= set(run["points"][0])
        assert run["train_curve"] and "gold_reward" in run["train_curve"][0]
    assert [r["n"] for r in saved["best_of_n"]] == [1, 2, 4]
    assert {"alpha", "b", "r2"} <= set(saved["summary"][0]["gao_fit"])
    assert {"gold_start", "gold_peak", "final_gold_reward", "final_proxy_reward", "final_kl"} <= set(saved["summary"][0])
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "sweep.md").read_text()
    assert "| beta | seeds | gold start |" in table and "| 0.1 | 1 |" in table and "| 4 | 0.64 |" in table

    finished = run_path(tmp_path, 0.0, 0)
    stamp = finished.stat().st_mtime_ns
    again = script.main(args)  # everything is done: nothing is retrained
    assert finished.stat().st_mtime_ns == stamp
    assert again["summary"] == result["summary"]
    args.learning_rate = 1e-3  # a stored run made with other settings is never silently reused
    with pytest.raises(ValueError, match=r"beta0_seed0\.json was made with other settings"):
        script.main(args)


def test_bad_sweep_arguments(capsys):
    script = command
    for argv, message in ((["--betas", "0,x"], "comma-separated numbers"), (["--betas", "-0.1"], "beta >= 0"),
                          (["--ensemble-objective", "median"], "--ensemble-objective must be"),
                          (["--best-of-n-max", "48"], "power of two")):
        with pytest.raises(SystemExit):
            parse_dataclass(script.Args, "", argv)
        assert message in capsys.readouterr().err


def test_gao_fit_recovers_alpha_and_b():
    rng = np.random.default_rng(0)
    kl = np.linspace(0.0, 40.0, 60)
    gain = gao_rl(np.sqrt(kl), 1.3, 0.6) + rng.normal(0, 0.01, kl.shape)
    fit = fit_gao(kl, gain)
    assert fit.alpha == pytest.approx(1.3, abs=0.02)
    assert fit.b == pytest.approx(0.6, abs=0.02)
    assert fit.r2 > 0.99
    # the peak of d (alpha - b ln d) is where alpha - b ln d - b = 0
    assert fit.peak_d == pytest.approx(np.exp(1.3 / 0.6 - 1), rel=0.05)
    assert gao_rl(np.array([0.0]), 1.0, 1.0)[0] == 0.0


def test_best_of_n_estimator_matches_brute_force():
    rng = np.random.default_rng(1)
    proxy, gold = rng.normal(size=(3, 6)), rng.normal(size=(3, 6))
    curve = best_of_n_curve(proxy, {"gold_reward": gold}, [1, 2, 4, 6])
    for row in curve:
        n = row["n"]
        brute = np.mean([np.mean([gold[p, max(subset, key=lambda i: proxy[p, i])]
                                  for subset in itertools.combinations(range(6), n)]) for p in range(3)])
        assert row["gold_reward"] == pytest.approx(brute)
        assert row["kl"] == pytest.approx(np.log(n) - (n - 1) / n)
    assert curve[0]["gold_reward"] == pytest.approx(gold.mean())
    assert best_of_n_weights(6, 6)[-1] == 1.0 and best_of_n_weights(6, 3).sum() == pytest.approx(1.0)
    assert best_of_n_kl(1) == 0.0
    assert interpolate_best_of_n(curve, 0.0) == pytest.approx(gold.mean())
    assert interpolate_best_of_n(curve, 100.0) is None


def test_stored_settings_do_not_depend_on_where_the_package_is_installed():
    # the ensemble's default directory lies inside the installed package; without an ensemble it must not count
    here, elsewhere = command.Args(quick=True), command.Args(quick=True, ensemble_dir="/elsewhere/artifacts_ensemble")
    assert here.run_config() == elsewhere.run_config() and here.best_of_n_config() == elsewhere.best_of_n_config()
    assert here.run_config()["ensemble_dir"] is None
    worst = command.Args(quick=True, ensemble_objective="worst")
    assert worst.run_config() != command.Args(quick=True, ensemble_objective="worst", ensemble_dir="/x").run_config()
