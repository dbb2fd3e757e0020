"""Iterated (online) RLHF, ``rlhf-gym iterate``: the quick study (one round against two), where round 2's comparisons
come from, the reward model of round 2, resuming, stored settings, the labelling page as labeller, bad options."""

import itertools
import json
import shutil

import pytest

from rlhf_gym.studies import iterated as command
from rlhf_gym.agents.ppo import TokenPPO
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.collect import collect_preferences
from rlhf_gym.errors import ConfigError
from rlhf_gym.studies.analysis.rounds import (AGENT_FILE, COMPARISONS_FILE, PAIRS_FILE, REWARD_DIR, ROUND_FILE, markdown_table,
                                     round_dir, round_prompts, round_seed, run_dir, summarize_schedules)
from rlhf_gym.jsonl import read_jsonl
from rlhf_gym.labelling import LabelStore, load_pairs
from rlhf_gym.preferences import load_preferences
from rlhf_gym.reward_training import METADATA_FILE, data_hash

TINY = ["--seeds", "0", "--total-comparisons", "16", "--iterations", "2", "--eval-every", "1", "--n-envs", "8",
        "--batch-size", "4", "--n-epochs", "2", "--max-new-tokens", "12", "--n-eval-prompts", "16", "--workers", "1",
        "--rm-epochs", "1"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The quick study (schedules of 1 and 2 rounds, seed 0): its arguments and result."""
    args = parse_dataclass(command.Args, "", ["--quick", "--out-dir", str(tmp_path_factory.mktemp("iterated"))])
    return args, command.main(args)


def round_record(args, rounds: int, k: int) -> dict:
    """Round ``k``'s record of the run with ``rounds`` rounds, without its timing."""
    record = json.loads((round_dir(run_dir(args.out_dir, rounds, 0), k) / ROUND_FILE).read_text())
    record.pop("seconds")
    return record


def test_quick_study_writes_both_schedules_table_and_figure(study):
    args, result = study
    out = run_dir(args.out_dir, 2, 0).parent
    assert [row["rounds"] for row in result["summary"]] == [1, 2]
    saved = json.loads((out / "iterated.json").read_text())
    assert {"args", "summary", "runs"} <= set(saved) and len(saved["runs"]) == 2
    one, two = saved["runs"]
    assert [(p["round"], p["iteration"]) for p in one["points"]] == [(1, 0), (1, 1), (1, 2)]
    assert [(p["round"], p["iteration"]) for p in two["points"]] == [(1, 0), (1, 1), (2, 1), (2, 2)]
    # round 2 continues the policy where round 1 stopped: the same held-out samples, now scored by round 2's proxy
    end_of_1, start_of_2 = two["points"][1], two["points"][2]
    assert (start_of_2["gold_reward"], start_of_2["kl"]) == (end_of_1["gold_reward"], end_of_1["kl"])
    assert start_of_2["samples"] == end_of_1["samples"] and start_of_2["proxy_reward"] != end_of_1["proxy_reward"]
    assert two["final_samples"] == two["points"][-1]["samples"] and len(two["final_samples"]) == args.n_samples_kept
    assert len(two["comparisons_ill_formed"]) == 2 and all(0 <= s <= 1 for s in two["comparisons_ill_formed"])
    for k in (1, 2):
        directory = round_dir(run_dir(args.out_dir, 2, 0), k)
        assert {COMPARISONS_FILE, REWARD_DIR, AGENT_FILE, ROUND_FILE} <= {p.name for p in directory.iterdir()}
        assert round_record(args, 2, k)["n_comparisons"] == len(list(read_jsonl(directory / COMPARISONS_FILE))) <= 16
    assert (out / "iterated.png").read_bytes()[:4] == b"\x89PNG"
    table = (out / "iterated.md").read_text()
    assert "| rounds | seeds | gold start |" in table and "| 2 | 1 |" in table and "0 of 1 |" in table


def test_round_2_reward_model_is_trained_on_the_comparisons_of_both_rounds(study):
    args, _ = study
    run = run_dir(args.out_dir, 2, 0)
    records = [r for k in (1, 2) for r in load_preferences(round_dir(run, k) / COMPARISONS_FILE)]
    metadata = json.loads((round_dir(run, 2) / REWARD_DIR / METADATA_FILE).read_text())
    assert metadata["data_sha256"] == data_hash(records)
    assert metadata["n_comparisons"] == len(records) == metadata["n_train"] + metadata["n_eval"]
    first = json.loads((round_dir(run, 1) / REWARD_DIR / METADATA_FILE).read_text())
    assert first["n_comparisons"] == len(load_preferences(round_dir(run, 1) / COMPARISONS_FILE)) < len(records)
    assert round_record(args, 2, 2)["reward_model"]["data_sha256"] == metadata["data_sha256"]


def test_round_2_comparisons_are_drawn_from_the_round_1_policy(study, task, tokenizer, ref_model, tmp_path):
    args, _ = study
    run = run_dir(args.out_dir, 2, 0)

    def pairs(records_or_path, first: str, second: str) -> dict:
        return {r["pair_id"]: (r["prompt"], {r[first], r[second]}) for r in read_jsonl(records_or_path)}

    def sampled(policy, k: int) -> dict:
        """The pairs round ``k`` would collect from ``policy``: its prompts, seed and budget, unlabelled."""
        path = tmp_path / f"{id(policy)}_{k}.jsonl"
        collect_preferences(policy, tokenizer, round_prompts(task.train_prompts, 0, k), None, path, 16,
                            args.max_new_tokens, seed=round_seed(0, k), progress=False)
        return pairs(path, "response_a", "response_b")

    stored = {k: pairs(round_dir(run, k) / COMPARISONS_FILE, "chosen", "rejected") for k in (1, 2)}
    round_1_policy = TokenPPO.load(round_dir(run, 1) / AGENT_FILE, device="cpu").policy.lm.eval()
    assert sampled(round_1_policy, 2) == stored[2]
    assert sampled(ref_model, 2) != stored[2]  # not the SFT policy's samples
    assert sampled(ref_model, 1) == stored[1]  # round 1 samples the SFT policy


def test_pairing_with_the_sft_policy_draws_each_second_response_from_it(tmp_path, task, tokenizer, ref_model):
    args = parse_dataclass(command.Args, "", [*TINY, "--rounds", "2", "--pair-with", "sft", "--out-dir", str(tmp_path)])
    command.main(args)
    run = run_dir(tmp_path, 2, 0)
    round_1_policy = TokenPPO.load(round_dir(run, 1) / AGENT_FILE, device="cpu").policy.lm.eval()
    expected = tmp_path / "expected.jsonl"
    collect_preferences(round_1_policy, tokenizer, round_prompts(task.train_prompts, 0, 2), None, expected, 8,
                        args.max_new_tokens, seed=round_seed(0, 2), progress=False, second_policy=ref_model)
    stored = {r["pair_id"]: {r["chosen"], r["rejected"]} for r in read_jsonl(round_dir(run, 2) / COMPARISONS_FILE)}
    assert stored == {r["pair_id"]: {r["response_a"], r["response_b"]} for r in read_jsonl(expected)}  # 8 pairs a round
    with pytest.raises(ConfigError, match="--pair-with must be one of current, sft"):
        command.Args(pair_with="reference")


def test_an_interrupted_run_resumes_to_the_same_result(study, tmp_path):
    args, result = study
    copy = tmp_path / "copy"
    shutil.copytree(args.out_dir, copy)
    args = parse_dataclass(command.Args, "", ["--quick", "--out-dir", str(copy)])
    run = run_dir(copy, 2, 0)
    expected = round_record(args, 2, 2)
    untouched = {p: p.stat().st_mtime_ns for p in [*round_dir(run, 1).rglob("*"), *run_dir(copy, 1, 0).rglob("*")]}
    comparisons = round_dir(run, 2) / COMPARISONS_FILE
    lines = comparisons.read_text().splitlines(keepends=True)

    def untimed(path) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(path)]

    collected = untimed(comparisons)

    # killed during round 2's collection: half its comparisons on disk, no reward model, agent or record
    comparisons.write_text("".join(lines[: len(lines) // 2]))
    for path in (round_dir(run, 2) / ROUND_FILE, round_dir(run, 2) / AGENT_FILE):
        path.unlink()
    shutil.rmtree(round_dir(run, 2) / REWARD_DIR)
    again = command.main(args)
    assert untimed(comparisons) == collected  # the lines kept, then what an uninterrupted collection wrote
    assert round_record(args, 2, 2) == expected
    assert again["summary"] == result["summary"]

    # killed during round 2's PPO: the reward model is reused, the policy continues from round 1's agent again
    reward_metadata = round_dir(run, 2) / REWARD_DIR / METADATA_FILE
    stamp = reward_metadata.stat().st_mtime_ns
    (round_dir(run, 2) / ROUND_FILE).unlink()
    command.main(args)
    assert reward_metadata.stat().st_mtime_ns == stamp
    assert round_record(args, 2, 2) == expected
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # finished rounds are never rewritten


def test_a_full_disk_is_one_error_line_and_the_rerun_keeps_the_comparisons(tmp_path, capsys, monkeypatch):
    """safetensors' own error class for a full disk (0.9.0: a RunFailedError traceback) is one ``error:`` line naming
    the reward model; the round's comparisons stay on disk and a rerun, with space again, reuses them."""
    import transformers.modeling_utils
    from helpers import cli_error
    from safetensors import SafetensorError

    def disk_full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    argv = [*TINY, "--rounds", "1", "--out-dir", tmp_path]
    with monkeypatch.context() as patch:
        patch.setattr(transformers.modeling_utils, "safe_save_file", disk_full)
        message = cli_error(capsys, "iterate", argv)
    run = run_dir(tmp_path, 1, 0)
    assert message == f"error: No space left on device: {round_dir(run, 1) / REWARD_DIR}"
    comparisons = (round_dir(run, 1) / COMPARISONS_FILE).read_bytes()
    assert len(comparisons.splitlines()) == 16
    assert not (round_dir(run, 1) / REWARD_DIR).exists()
    command.main(parse_dataclass(command.Args, "", [str(a) for a in argv]))
    assert (round_dir(run, 1) / COMPARISONS_FILE).read_bytes() == comparisons
    assert (round_dir(run, 1) / REWARD_DIR / METADATA_FILE).is_file()


def test_a_run_stored_with_other_settings_is_refused(study):
    args, _ = study
    other = parse_dataclass(command.Args, "", ["--quick", "--out-dir", args.out_dir])
    other.learning_rate = 1e-3
    with pytest.raises(ConfigError, match=r"rounds1_seed0/run\.json was made with other settings \(learning_rate\)"):
        command.main(other)


def label(directory, choices: list[str], limit: int | None = None) -> None:
    """Judge the pairs of a round through the labelling page's store, as the page does, cycling through ``choices``."""
    store = LabelStore(directory / COMPARISONS_FILE, load_pairs(directory / PAIRS_FILE))
    try:
        for choice in itertools.islice(itertools.cycle(choices), limit):
            pair = store.next_pair("ana")
            if pair is None:
                break
            store.judge("ana", pair.pair_id, choice)
    finally:
        store.close()


def test_the_labelling_page_labels_each_round(tmp_path, capsys):
    args = parse_dataclass(command.Args, "", ["--out-dir", str(tmp_path), *TINY, "--rounds", "2", "--labeler", "page"])
    run = run_dir(tmp_path, 2, 0)
    first = command.main(args)
    n_pairs = len(load_pairs(round_dir(run, 1) / PAIRS_FILE))
    assert first == {"waiting": [{"round": 1, "left": n_pairs, "directory": str(round_dir(run, 1))}]}
    out = capsys.readouterr().out
    assert (f"rlhf-gym label --pairs {round_dir(run, 1) / PAIRS_FILE} --out {round_dir(run, 1) / COMPARISONS_FILE}"
            in out) and "rerun this same command" in out
    assert not (tmp_path / "iterated.json").exists()

    label(round_dir(run, 1), ["left"], limit=3)
    assert command.main(args)["waiting"][0]["left"] == n_pairs - 3
    assert f"{n_pairs - 3} pair(s) left to label" in capsys.readouterr().out

    label(round_dir(run, 1), ["right", "tie", "left", "skip"])
    waiting = command.main(args)["waiting"]
    assert waiting == [{"round": 2, "left": len(load_pairs(round_dir(run, 2) / PAIRS_FILE)),
                        "directory": str(round_dir(run, 2))}]
    judged = list(read_jsonl(round_dir(run, 1) / COMPARISONS_FILE))
    assert len(judged) == n_pairs and {r.get("label") for r in judged} == {None, "tie", "skip"}
    preferred = load_preferences(round_dir(run, 1) / COMPARISONS_FILE)  # ties and skips are not trained on
    assert round_record(args, 2, 1)["reward_model"]["n_comparisons"] == len(preferred) < n_pairs

    label(round_dir(run, 2), ["left", "right"])
    result = command.main(args)
    assert [row["rounds"] for row in result["summary"]] == [2]
    assert round_record(args, 2, 2)["config"]["labeler"] == "page"
    assert (tmp_path / "iterated.md").exists()


@pytest.mark.parametrize("argv, message", [
    (["--rounds", "1,7"], "--iterations 60 does not split evenly over 7 rounds"),
    (["--rounds", "1,3", "--total-comparisons", "1000"], "--total-comparisons 1000 does not split evenly over 3 rounds"),
    (["--rounds", "1,x"], "comma-separated integers"),
    (["--rounds", "0,1"], "at least one schedule of 1 to 999 rounds"),
    (["--task", "nope"], "unknown task 'nope'"),
    (["--labeler", "crowd"], "--labeler must be one of simulated, terminal, page"),
    (["--labeler", "terminal"], "use --workers 1"),
    (["--batch-size", "128"], "--batch-size 128 is larger than a rollout"),
    (["--total-comparisons", "0"], "--total-comparisons must be > 0"),
    (["--rounds", "1,1"], "--rounds 1,1: each schedule once, in increasing order"),
    (["--rounds", "3,1"], "--rounds 3,1: each schedule once, in increasing order"),
    (["--quick", "--seeds", "0,1"], "--quick sets --seeds itself"),
    (["--quick", "--iterations", "6", "--rounds", "1,3"], "--quick sets --rounds, --iterations itself"),
    (["--method", "ppo"], "--method must be one of rlhf, dpo, got 'ppo'"),
    (["--method", "dpo", "--dpo-beta", "0"], "--dpo-beta must be > 0"),
    (["--method", "dpo", "--dpo-epochs", "0"], "--dpo-epochs must be > 0"),
])
def test_bad_options_exit_2_with_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:  # parsing only: a valid command line would start the study
        parse_dataclass(command.Args, "", argv, prog="rlhf-gym iterate")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert sum(line.startswith("rlhf-gym iterate: error:") for line in err.splitlines()) == 1


def test_quick_accepts_options_it_does_not_set_and_its_own_values():
    args = command.Args(quick=True, beta=0.01, seeds="0", out_dir="elsewhere")
    assert (args.beta, args.seeds, args.out_dir, args.rounds, args.iterations) == (0.01, "0", "elsewhere", "1,2", 2)


def test_args_refuse_an_unknown_task():
    with pytest.raises(ConfigError, match="unknown task 'nope'; known tasks"):
        command.Args(task="nope")


def test_the_table_reports_a_biased_task_s_bias_on_the_final_samples():
    def run(rounds: int, seed: int, words: int) -> dict:
        point = {"iteration": 0, "gold_reward": 0.0, "proxy_reward": 0.0, "kl": 0.0, "well_formed": 1.0,
                 "response_length": 1.0, "distinct_2": 1.0, "samples": [["list two :", "a " * words]]}
        return {"rounds": rounds, "seed": seed, "beta": 0.0, "points": [point], "first_round_proxy_final": 0.0,
                "comparisons_ill_formed": [0.0] * rounds, "final_samples": point["samples"]}

    rows = summarize_schedules([run(1, 0, 2), run(1, 1, 4), run(2, 0, 6)], lambda p, r: len(r.split()), "words")
    assert [row["final_bias"] for row in rows] == [[3.0, 1.0], [6.0, 0.0]]  # mean ± std of each run's mean
    table = markdown_table(rows)
    assert "| words (final samples) |" in table and table.rstrip().endswith("| 6.00 ± 0.00 |")
    assert "final samples" not in markdown_table(summarize_schedules([run(1, 0, 2)]))  # an unbiased task: no column


def test_a_run_hacked_and_pulled_back_counts_as_hacked_once_but_not_at_the_end():
    def point(iteration: int, well_formed: float) -> dict:
        return {"iteration": iteration, "gold_reward": 0.0, "proxy_reward": 0.0, "kl": 0.0, "well_formed": well_formed,
                "response_length": 1.0, "distinct_2": 1.0, "samples": []}

    def run(seed: int, shares: list[float]) -> dict:
        points = [point(i, w) for i, w in enumerate(shares)]
        return {"rounds": 2, "seed": seed, "beta": 0.0, "points": points, "first_round_proxy_final": 0.0,
                "comparisons_ill_formed": [0.0, 0.9], "final_samples": []}

    row, = summarize_schedules([run(0, [1.0, 0.1, 0.9]), run(1, [1.0, 0.2, 0.3]), run(2, [1.0, 0.8, 1.0])])
    assert (row["ever_hacked"], row["hacked"]) == (2, 1)
    assert "| 2, 1 of 3 |" in markdown_table([row])
