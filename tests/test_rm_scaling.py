"""Reward-model scaling (``rlhf-gym rm-scaling``): Gao's two forms, the proxy grid, the shared best-of-n samples, the
quick study end to end with its run store, and the sweep's ``--reward-model`` proxy."""

import json

import numpy as np
import pytest

from rlhf_gym.studies import rm_scaling as command
from rlhf_gym.studies import sweep
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.ensemble import ProxyRewardArgs
from rlhf_gym.errors import ConfigError, MissingFileError
from rlhf_gym.best_of_n import best_of_n_curve, rank_samples
from rlhf_gym.studies.analysis.gao import best_of_n_gain_points, fit_gao, gao_best_of_n, gao_rl, gold_gain_points
from rlhf_gym.proxies import ProxySpec, parse_ints, parse_sizes, train_proxy
from rlhf_gym.reward_model import RewardModel
from rlhf_gym.reward_training import METADATA_FILE


def test_best_of_n_form_is_fitted_exactly_and_peaks_at_alpha_over_2b():
    rng = np.random.default_rng(0)
    kl = np.linspace(0.0, 9.0, 40)
    gain = gao_best_of_n(np.sqrt(kl), 1.2, 0.4) + rng.normal(0, 0.005, kl.shape)
    fit = fit_gao(kl, gain, form="best_of_n")
    assert fit.form == "best_of_n" and abs(fit.alpha - 1.2) < 0.02 and abs(fit.b - 0.4) < 0.01 and fit.r2 > 0.99
    assert fit.peak_d == pytest.approx(fit.alpha / (2 * fit.b))  # dR/dd = alpha - 2 b d = 0
    d = np.linspace(0.1, 3.0, 7)
    assert np.allclose(fit.predict(d), d * (fit.alpha - fit.b * d))
    # the RL form is the default, with its own peak exp(alpha / b - 1)
    rl = fit_gao(kl, gao_rl(np.sqrt(kl), 1.0, 0.5))
    assert rl.form == "rl" and rl.peak_d == pytest.approx(np.exp(1.0 / 0.5 - 1.0))
    assert fit_gao(kl, -gain, form="best_of_n").peak_d is None  # b < 0: no maximum
    with pytest.raises(ValueError, match="unknown Gao form"):
        fit_gao(kl, gain, form="linear")


def test_best_of_n_gain_is_measured_from_best_of_one():
    curve = [{"n": 1, "kl": 0.0, "gold_reward": -0.5}, {"n": 2, "kl": 0.19, "gold_reward": 0.0},
             {"n": 4, "kl": 0.64, "gold_reward": 0.25}]
    kl, gain = best_of_n_gain_points(curve)
    assert kl.tolist() == [0.0, 0.19, 0.64] and gain.tolist() == [0.0, 0.5, 0.75]


def test_rl_form_by_hand_and_its_exact_fit():
    # R(2) = 2 (1.5 - 0.4 ln 2) = 3 - 0.8 * 0.69314718056 = 3 - 0.55451774445 = 2.44548225555
    assert gao_rl(np.array([2.0]), 1.5, 0.4)[0] == pytest.approx(2.44548225555, abs=1e-9)
    # points exactly on R(d) = d (1.5 - 0.4 ln d), given as KL = d^2: the fit takes sqrt(KL) and recovers alpha and b
    d = np.array([0.5, 1.0, 2.0, 3.0, 4.0])
    gain = d * (1.5 - 0.4 * np.log(d))  # at d = 1: 1.5 (ln 1 = 0)
    assert gain[1] == 1.5
    fit = fit_gao(d ** 2, gain, form="rl")
    assert fit.alpha == pytest.approx(1.5, abs=1e-6) and fit.b == pytest.approx(0.4, abs=1e-6)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9) and fit.n_points == 5 and fit.form == "rl"
    assert fit.peak_d == pytest.approx(np.exp(1.5 / 0.4 - 1.0), rel=1e-6)  # exp(2.75) = 15.642631884...
    assert fit.peak_d == pytest.approx(15.6426318842, rel=1e-6)


def test_rl_gold_gain_is_measured_from_each_run_first_point():
    runs = [{"points": [{"kl": 0.0, "gold_reward": 0.7}, {"kl": 1.0, "gold_reward": 0.9}, {"kl": 4.0, "gold_reward": 0.6}]},
            {"points": [{"kl": 0.0, "gold_reward": -0.2}, {"kl": 2.25, "gold_reward": 0.3}]}]
    kl, gain = gold_gain_points(runs)
    assert kl.tolist() == [0.0, 1.0, 4.0, 0.0, 2.25]  # KL itself: fit_gao takes its square root
    # first run: 0.7 - 0.7 = 0, 0.9 - 0.7 = 0.2, 0.6 - 0.7 = -0.1; second run from its own start: 0, 0.3 + 0.2 = 0.5
    np.testing.assert_allclose(gain, [0.0, 0.2, -0.1, 0.0, 0.5], rtol=0, atol=1e-12)


def test_best_of_n_gain_starts_from_a_non_zero_best_of_one():
    curve = [{"n": 1, "kl": 0.0, "gold_reward": 0.7}, {"n": 2, "kl": 0.19, "gold_reward": 0.8},
             {"n": 4, "kl": 0.64, "gold_reward": 0.65}]
    kl, gain = best_of_n_gain_points(curve)
    # 0.7 - 0.7 = 0, 0.8 - 0.7 = 0.1, 0.65 - 0.7 = -0.05
    assert kl.tolist() == [0.0, 0.19, 0.64]
    np.testing.assert_allclose(gain, [0.0, 0.1, -0.05], rtol=0, atol=1e-12)


def test_ranking_shared_samples_is_best_of_n_of_each_proxy():
    # 2 prompts x 4 samples; proxy = the response's length, gold = its first character's code
    responses = ["a", "bbb", "cc", "dddd", "e", "f", "gg", "hhh"]
    samples = {"prompts": ["x"] * 4 + ["y"] * 4, "responses": responses, "n_max": 4,
               "values": {"gold_reward": [float(ord(r[0])) for r in responses]}}
    curve = rank_samples(samples, lambda prompts, texts: [len(t) for t in texts])
    expected = best_of_n_curve(np.array([[1, 3, 2, 4], [1, 1, 2, 3]], dtype=float),
                               {"gold_reward": np.array([[97, 98, 99, 100], [101, 102, 103, 104]], dtype=float)}, [1, 2, 4])
    assert curve == expected
    assert curve[-1]["gold_reward"] == pytest.approx((100 + 104) / 2)  # best of 4: the longest of each prompt


def test_proxy_specs_and_their_options():
    assert ProxySpec(64, 2, 10000).name == "w64_l2_n10000"
    assert ProxySpec(32, 1, 3333, seed=2, offset=3333).name == "w32_l1_n3333_from3333_seed2"
    assert parse_sizes("32x1, 64X2") == [(32, 1), (64, 2)]
    for bad in ("32", "30x1", "64x0", "ax2", ""):
        with pytest.raises(ConfigError, match="--sizes must list WIDTHxLAYERS"):
            parse_sizes(bad)
    assert parse_ints("1000,3000", "--n-comparisons", minimum=2) == [1000, 3000]
    for bad in ("1000,1000", "1", "x"):
        with pytest.raises(ConfigError, match="--n-comparisons must list distinct integers >= 2"):
            parse_ints(bad, "--n-comparisons", minimum=2)


def test_a_proxy_trains_on_its_slice_only(tmp_path):
    records = [{"prompt": f"the food felt {i}", "chosen": "generous !", "rejected": "bland ."} for i in range(12)]
    metrics = train_proxy(ProxySpec(8, 1, 6, seed=1, offset=6), tmp_path / "proxy", records, epochs=1)
    saved = json.loads((tmp_path / "proxy" / METADATA_FILE).read_text())
    assert saved["spec"] == {"width": 8, "layers": 1, "n_comparisons": 6, "seed": 1, "offset": 6}
    assert saved["parameters"] == metrics["parameters"] > 0 and 0 <= saved["gold_agreement"] <= 1
    assert metrics["n_train"] + metrics["n_eval"] == 6  # comparisons 6..11 and nothing else
    assert isinstance(RewardModel.from_pretrained(tmp_path / "proxy"), RewardModel)
    with pytest.raises(ConfigError, match="run past the 12 shipped ones"):
        train_proxy(ProxySpec(8, 1, 8, offset=6), tmp_path / "other", records, epochs=1)


def test_reward_model_proxy_option(tmp_path):
    with pytest.raises(MissingFileError, match="--reward-model: no such directory"):
        ProxyRewardArgs(reward_model=str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="give one of them"):
        ProxyRewardArgs(reward_model=str(tmp_path), ensemble_objective="mean")
    # a sweep run stored before the option existed is still reused: a missing setting reads as None
    stored = {"config": {k: v for k, v in sweep.Args(quick=True).run_config().items() if k != "reward_model"}}
    assert sweep.check_stored(tmp_path / "old.json", stored, sweep.Args(quick=True).run_config()) is stored


@pytest.mark.slow
def test_quick_study_fits_every_proxy_and_resumes(tmp_path):
    args = parse_dataclass(command.Args, "", ["--quick", "--out-dir", str(tmp_path)])
    result = command.main(args)
    names = {row["name"] for row in result["rows"]}
    assert names == {"w8_l1_n64", "w8_l1_n128", "w16_l1_n64", "w16_l1_n128"}
    for row in result["rows"]:
        assert [r["n"] for r in row["best_of_n"]] == [1, 2, 4]
        assert row["best_of_n_fit"]["form"] == "best_of_n" and row["rl_fit"]["form"] == "rl"
        assert row["rl_fit"]["n_points"] == args.iterations + 1  # one seed, evaluated before and after each iteration
        run = json.loads((tmp_path / "ppo" / row["name"] / "runs" / "beta0_seed0.json").read_text())
        assert run["config"]["reward_model"] == str(tmp_path / "proxies" / row["name"])  # PPO against this proxy
    for name in ("scaling.png", "coefficients.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    table = (tmp_path / "scaling.md").read_text()
    assert table.count("\n| 8 x 1 |") == 4 and table.count("\n| 16 x 1 |") == 4  # in the proxies' and PPO's tables
    # the proxies differ: they rank the same samples differently
    curves = {row["name"]: row["best_of_n"][-1]["proxy_reward"] for row in result["rows"]}
    assert len(set(curves.values())) == 4

    # a rerun trains nothing and gives the same table; other settings are refused, naming the file
    assert command.first_jobs(args) == [] and command.second_jobs(args) == []
    assert command.main(args)["rows"] == result["rows"]
    args.best_of_n_prompts = 4
    with pytest.raises(ConfigError, match=r"best_of_n_samples\.json was made with other settings"):
        command.first_jobs(args)


def test_bad_study_arguments(capsys):
    for argv, message in ((["--sizes", "64"], "--sizes must list"), (["--n-comparisons", "0"], "--n-comparisons must"),
                          (["--best-of-n-max", "48"], "power of two"), (["--seeds", "0,0"], "--seeds must list")):
        with pytest.raises(SystemExit):
            parse_dataclass(command.Args, "", argv)
        assert message in capsys.readouterr().err
