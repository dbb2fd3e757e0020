"""Stage 1's pair sampling (rlhf_gym.pairing, ``--pairs``) and the annotators' tie policy (``--annotator-ties``)."""

import random
from collections import Counter

import pytest
from helpers import cli_error

from rlhf_gym.collect import collect_preferences
from rlhf_gym.commands import collect
from rlhf_gym.errors import ConfigError
from rlhf_gym.generation import generate_texts
from rlhf_gym.jsonl import read_jsonl
from rlhf_gym.labelers import AnnotatorPool, SimulatedAnnotator
from rlhf_gym.pairing import Pairing, contrast_records, counterfactual_records, cut_response, garble_response
from rlhf_gym.tasks import load_task, world_of


def shout(prompt, response, rng):
    return response.upper() if response.islower() else None


def never(prompt, response, rng):
    return None


FAMILIES = {"shout": shout, "never": never}


def test_sft_pairs_keep_the_sampled_response_and_carry_no_type():
    assert Pairing().second_response(0, 7, "p", "a b", "c d") == ("c d", None)


def test_a_counterfactual_pair_edits_the_first_response_with_a_family_that_applies():
    pairing = Pairing("counterfactual", families=FAMILIES)
    assert pairing.second_response(0, 7, "p", "a b", "c d") == ("A B", "counterfactual:shout")
    assert pairing.second_response(0, 7, "p", "A B", "c d") == ("c d", "sft")  # no family has a place: an sft pair


def test_counterfactual_records_are_those_of_a_family_only():
    records = [{"pair_type": "sft"}, {"pair_type": "counterfactual:excluded_member"}, {},
               {"pair_type": "counterfactual"}, {"pair_type": "counterfactual:repeated_item"}]
    assert counterfactual_records(records) == [records[1], records[4]]


def test_mixed_pairs_draw_from_seed_and_pair_id_only():
    pairing = Pairing("mixed", 0.3, FAMILIES)
    kinds = [pairing.second_response(5, k, "p", "a", "b")[1] for k in range(2000)]
    assert Counter(kinds)["counterfactual:shout"] / 2000 == pytest.approx(0.3, abs=0.03)
    assert kinds == [pairing.second_response(5, k, "p", "a", "b")[1] for k in range(2000)]  # a rerun: the same pairs
    assert kinds != [pairing.second_response(6, k, "p", "a", "b")[1] for k in range(2000)]


def reverse(prompt, response, rng):
    return " ".join(reversed(response.split())) if " " in response else None


def test_contrast_pairs_replace_a_share_of_the_counterfactual_pairs_and_nothing_else():
    plain = Pairing("mixed", 0.5, FAMILIES)
    contrasting = Pairing("mixed", 0.5, FAMILIES, contrast_share=0.3, contrasts={"reverse": reverse})
    pairs = [(plain.second_response(2, k, "p", "a b", "c d"), contrasting.second_response(2, k, "p", "a b", "c d"))
             for k in range(3000)]
    # an ordinary pair stays as it was; a counterfactual one is a contrast with probability 0.3
    assert all(with_contrasts == without for without, with_contrasts in pairs if without[1] == "sft")
    counterfactual = [with_contrasts for without, with_contrasts in pairs if without[1] != "sft"]
    assert {pair for pair in counterfactual} == {("A B", "counterfactual:shout"), ("b a", "contrast:reverse")}
    share = sum(kind == "contrast:reverse" for _, kind in counterfactual) / len(counterfactual)
    assert share == pytest.approx(0.3, abs=0.04)
    # a response without a place for a contrast gets a family's edit instead
    assert {contrasting.second_response(2, k, "p", "a", "c")[1] for k in range(200)} == {"sft", "counterfactual:shout"}
    records = [{"pair_type": "contrast:reverse"}, {"pair_type": "counterfactual:shout"}, {"pair_type": "contrast"}]
    assert contrast_records(records) == [records[0]]


def ends_with_a_period(prompt, response):
    return response.endswith(" .")


def test_a_cut_is_an_ill_formed_proper_prefix_chosen_uniformly():
    response = "a b . c ."
    cuts = Counter(cut_response(response, lambda r: r.endswith(" ."), random.Random(i)) for i in range(3000))
    assert set(cuts) == {"a", "a b", "a b . c"}  # "a b ." is well-formed: never a cut
    assert all(n / 3000 == pytest.approx(1 / 3, abs=0.04) for n in cuts.values())
    assert cut_response("a .", lambda r: r.endswith("."), random.Random(0)) == "a"
    assert cut_response("a", lambda r: False, random.Random(0)) is None  # no proper prefix
    assert cut_response("a b c", lambda r: True, random.Random(0)) is None  # every prefix well-formed


def side_by_side(before: Pairing, after: Pairing) -> list[tuple]:
    """Each of 3,000 pair ids' second response under both pairings (seed 1; first ``a b .``, sampled ``c d .``)."""
    return [(before.second_response(1, k, "p", "a b .", "c d ."), after.second_response(1, k, "p", "a b .", "c d ."))
            for k in range(3000)]


def share_made(pairs: list[tuple], kind: str) -> float:
    """Checks that the second pairing drew what the first drew but for ordinary pairs it made ``kind`` pairs; returns
    the share of the ordinary pairs it made so."""
    assert all(after == before or (before == ("c d .", "sft") and after[1] == kind) for before, after in pairs)
    kinds = Counter(after[1] for _, after in pairs)
    return kinds[kind] / (kinds[kind] + kinds["sft"])


def test_cut_pairs_replace_a_share_of_the_ordinary_pairs_and_nothing_else():
    pairs = side_by_side(Pairing("mixed", 0.5, FAMILIES), Pairing("mixed", 0.5, FAMILIES, 0.4, ends_with_a_period))
    assert share_made(pairs, "cut") == pytest.approx(0.4, abs=0.04)  # 40 % of the ordinary pairs cut, nothing else
    assert {with_cuts[0] for _, with_cuts in pairs if with_cuts[1] == "cut"} == {"a", "a b"}
    sft_with_cuts = Pairing(cut_share=0.4, is_well_formed=ends_with_a_period)  # sft pairs now carry their type
    assert {sft_with_cuts.second_response(1, k, "p", "a b .", "c d .")[1] for k in range(100)} == {"sft", "cut"}


def test_cut_empty_admits_the_empty_response_among_the_cuts():
    assert Counter(cut_response("a b .", lambda r: r.endswith("."), random.Random(k), min_words=0)
                   for k in range(3000)).keys() == {"", "a", "a b"}
    assert cut_response("a", lambda r: r.endswith("."), random.Random(0), min_words=0) == ""  # one word: only nothing
    emptying = Pairing("mixed", 0.5, FAMILIES, 0.4, ends_with_a_period, cut_empty=True)
    cuts = Counter(second for k in range(3000)
                   for second, kind in [emptying.second_response(1, k, "p", "a b .", "c d .")] if kind == "cut")
    assert cuts.keys() == {"", "a", "a b"} and cuts[""] / sum(cuts.values()) == pytest.approx(1 / 3, abs=0.05)


def test_cut_ends_admits_ill_formed_suffixes_down_to_a_lone_last_token():
    # "a b . c ." has the proper prefixes a / a b / a b . / a b . c and suffixes b . c . / . c . / c . / .; those
    # ending in " ." are well-formed, never cuts
    cuts = Counter(cut_response("a b . c .", lambda r: r.endswith(" ."), random.Random(k), ends=True) for k in range(4000))
    assert cuts.keys() == {"a", "a b", "a b . c", "."}
    assert all(n / 4000 == pytest.approx(1 / 4, abs=0.04) for n in cuts.values())
    assert cut_response("a .", lambda r: r.endswith(" ."), random.Random(0), ends=True) in {"a", "."}
    assert cut_response("a", lambda r: False, random.Random(0), ends=True) is None  # one word: no proper cut
    ending = Pairing("mixed", 0.5, FAMILIES, 0.4, ends_with_a_period, cut_ends=True)
    cut_seconds = Counter(second for k in range(3000)
                          for second, kind in [ending.second_response(1, k, "p", "a b .", "c d .")] if kind == "cut")
    assert cut_seconds.keys() == {"a", "a b", "."}  # the suffix "b ." is well-formed; "." alone is not
    plain = Pairing("mixed", 0.5, FAMILIES, 0.4, ends_with_a_period)
    kinds = [(plain.second_response(1, k, "p", "a b .", "c d .")[1], ending.second_response(1, k, "p", "a b .",
                                                                                                "c d .")[1])
             for k in range(300)]
    assert all(a == b for a, b in kinds)  # the same pairs are cut; only what a cut keeps differs


def one_word_edit(words, edited):
    """Which edit of :func:`garble_response` turns ``words`` into ``edited`` (None: none of them)."""
    if len(edited) == len(words) + 1:
        return "repeat" if any(edited[:i + 1] + edited[i + 2:] == words and edited[i] == edited[i + 1]
                               for i in range(len(words))) else None
    if len(edited) == len(words) - 1:
        return "drop" if any(words[:i] + words[i + 1:] == edited for i in range(len(words))) else None
    changed = [i for i, (a, b) in enumerate(zip(words, edited)) if a != b]
    if len(changed) == 2 and changed[1] == changed[0] + 1 and sorted(words) == sorted(edited):
        return "swap"
    return "replace" if len(changed) == 1 else None


def test_a_garble_is_one_word_edit_that_leaves_the_response_ill_formed():
    grammar = lambda r: r.endswith(" .") and ". ." not in r and "a a" not in r  # noqa: E731
    kinds = Counter()
    for k in range(400):
        garbled = garble_response("p q", "a b .", grammar, random.Random(k))
        kinds[one_word_edit("a b .".split(), garbled.split())] += 1
        assert not grammar(garbled) and set(garbled.split()) <= {"p", "q", "a", "b", "."}
    assert set(kinds) == {"swap", "repeat", "drop", "replace"}  # every kind, each a single edit (None: not one)
    assert garble_response("p", "a b .", lambda r: True, random.Random(0)) is None  # nothing breaks it
    assert garble_response("p", "", lambda r: False, random.Random(0)) is None  # no word to edit


@pytest.mark.parametrize("task_name", ["lists_v1", "facts_v1", "describe_v1"])
def test_garbling_a_well_formed_sample_keeps_its_words_but_one_and_breaks_its_form(task_name):
    """Property over many held-out prompts: a garbled SFT sample is one word edit of it, and ill-formed."""
    task, world = load_task(task_name), world_of(task_name)
    prompts = task.eval_prompts[:64]
    samples = generate_texts(task.load_policy(), task.load_tokenizer(), prompts, world.max_new_tokens, seed=0)
    checked = 0
    for k, (prompt, sample) in enumerate(zip(prompts, samples)):
        if not world.is_well_formed(prompt, sample):
            continue
        garbled = garble_response(prompt, sample, lambda r, prompt=prompt: world.is_well_formed(prompt, r), random.Random(k))
        assert garbled is not None and not world.is_well_formed(prompt, garbled)
        assert one_word_edit(sample.split(), garbled.split()) is not None
        checked += 1
    assert checked >= 50


def test_garbled_pairs_replace_a_share_of_the_ordinary_pairs_left_after_the_cuts():
    pairs = side_by_side(Pairing("mixed", 0.5, FAMILIES, 0.3, ends_with_a_period),
                         Pairing("mixed", 0.5, FAMILIES, 0.3, ends_with_a_period, garble_share=0.5))
    assert share_made(pairs, "garbled") == pytest.approx(0.5, abs=0.04)  # half of the ordinary pairs left garbled
    assert all(not ends_with_a_period("p", second) for second, kind in (w for _, w in pairs) if kind == "garbled")
    sft_with_garbles = Pairing(garble_share=0.4, is_well_formed=ends_with_a_period)  # sft pairs now carry their type
    assert {sft_with_garbles.second_response(1, k, "p", "a b .", "c d .")[1] for k in range(100)} == {"sft", "garbled"}


@pytest.mark.parametrize("garble_share, grammar, message", [
    (1.0, ends_with_a_period, r"--garble-share must be in \[0, 1\), got 1.0"),
    (-0.5, ends_with_a_period, r"--garble-share must be in \[0, 1\), got -0.5"),
    (0.2, None, "--garble-share needs a task with a grammar"),
])
def test_bad_garble_shares_are_refused(garble_share, grammar, message):
    with pytest.raises(ConfigError, match=message):
        Pairing("mixed", 0.5, FAMILIES, is_well_formed=grammar, garble_share=garble_share)
    if grammar is not None:
        with pytest.raises(ConfigError, match=message):
            collect.Args(task="lists", garble_share=garble_share)


@pytest.mark.parametrize("kind, share, families, message", [
    ("pairs", 0.5, FAMILIES, "--pairs must be one of sft, counterfactual, mixed, got 'pairs'"),
    ("mixed", 1.0, FAMILIES, "--counterfactual-share must be in (0, 1) for --pairs mixed, got 1.0"),
    ("counterfactual", 0.5, {}, "--pairs counterfactual needs a task with content-error families"),
])
def test_bad_pairings_are_refused(kind, share, families, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Pairing(kind, share, families)


@pytest.mark.parametrize("cut_share, grammar, message", [
    (1.0, ends_with_a_period, "--cut-share must be in [0, 1), got 1.0"),
    (-0.1, ends_with_a_period, "--cut-share must be in [0, 1), got -0.1"),
    (0.2, None, "--cut-share needs a task with a grammar"),
])
def test_bad_cut_shares_are_refused(cut_share, grammar, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Pairing("mixed", 0.5, FAMILIES, cut_share, grammar)


@pytest.mark.parametrize("kind, contrast_share, contrasts, message", [
    ("mixed", 1.0, {"reverse": reverse}, r"--contrast-share must be in \[0, 1\), got 1.0"),
    ("mixed", -0.2, {"reverse": reverse}, r"--contrast-share must be in \[0, 1\), got -0.2"),
    ("mixed", 0.3, {}, r"--contrast-share needs a task with contrasts \(describe\)"),
    ("sft", 0.3, {"reverse": reverse}, "--contrast-share replaces counterfactual pairs: it needs --pairs counterfactual"),
])
def test_bad_contrast_shares_are_refused(kind, contrast_share, contrasts, message):
    with pytest.raises(ConfigError, match=message):
        Pairing(kind, 0.5, FAMILIES if kind != "sft" else {}, contrast_share=contrast_share, contrasts=contrasts)


def test_collect_writes_counterfactual_pairs_of_the_task_and_resumes_to_the_same_file(tmp_path):
    task, world = load_task("lists"), world_of("lists")
    annotator = SimulatedAnnotator(task.gold_reward, 0.25, 0.0, seed=0, label_ties=True)
    out = tmp_path / "prefs.jsonl"
    pairing = Pairing("mixed", 0.5, world.content_errors)
    args = (task.load_policy(), task.load_tokenizer(), task.train_prompts[:16], annotator, out, 32)
    collect_preferences(*args, max_new_tokens=world.max_new_tokens, seed=3, batch_size=16, progress=False, pairing=pairing)
    records = list(read_jsonl(out))
    kinds = Counter(r["pair_type"].split(":")[0] for r in records)
    assert kinds["counterfactual"] >= 8 and kinds["sft"] >= 8
    for record in records:
        if record["pair_type"].startswith("counterfactual:"):
            family = record["pair_type"].split(":")[1]
            a, b = record["chosen"], record["rejected"]
            profiles = [world.content_profile(record["prompt"], r) for r in (a, b)]
            assert len(a.split()) == len(b.split()) and abs(profiles[0][family] - profiles[1][family]) == 1
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:5]))  # killed after five pairs
    collect_preferences(*args, max_new_tokens=world.max_new_tokens, seed=3, batch_size=16, progress=False, pairing=pairing)
    untimed = [{k: v for k, v in r.items() if k != "time"} for r in read_jsonl(out)]
    assert untimed == [{k: v for k, v in r.items() if k != "time"} for r in records]


def test_collect_writes_cut_pairs_that_annotators_reject(tmp_path):
    task, world = load_task("describe_v1"), world_of("describe_v1")
    annotator = SimulatedAnnotator(task.gold_reward, 0.1, 0.0, seed=0, label_ties=True)
    out = tmp_path / "prefs.jsonl"
    collect_preferences(task.load_policy(), task.load_tokenizer(), task.train_prompts[:16], annotator, out, 32,
                        max_new_tokens=world.max_new_tokens, seed=3, batch_size=16, progress=False,
                        pairing=Pairing.for_world(world, "mixed", 0.5, cut_share=0.5))
    cuts = [r for r in read_jsonl(out) if r["pair_type"] == "cut"]
    assert len(cuts) >= 4
    for record in cuts:  # the cut is a proper, ill-formed prefix of the other response, and gold's floor
        cut, whole = sorted((record["chosen"], record["rejected"]), key=len)
        assert whole.startswith(cut + " ") and not world.is_well_formed(record["prompt"], cut)
        assert task.gold_reward(record["prompt"], cut) == -1.75
    assert sum(len(r["rejected"]) < len(r["chosen"]) for r in cuts) >= 0.8 * len(cuts)


def test_collect_refuses_counterfactual_pairs_for_a_task_without_families(tmp_path, capsys):
    message = cli_error(capsys, "collect", ["--task", "reviews", "--pairs", "counterfactual", "--out", tmp_path / "p.jsonl",
                                            "--n-pairs", "2"])
    assert message == "error: --pairs counterfactual needs a task with content-error families (lists, facts, describe)"
    with pytest.raises(ConfigError, match=r"--cut-share must be in \[0, 1\), got 1.0"):
        collect.Args(task="lists", cut_share=1.0)
    with pytest.raises(ConfigError, match=r"--contrast-share must be in \[0, 1\), got 1.5"):
        collect.Args(task="describe", pairs="mixed", contrast_share=1.5)
    message = cli_error(capsys, "collect", ["--task", "lists", "--pairs", "mixed", "--contrast-share", "0.3", "--out",
                                            tmp_path / "p.jsonl", "--n-pairs", "2"])
    assert message == "error: --contrast-share needs a task with contrasts (describe)"


def test_collect_writes_contrast_pairs(tmp_path):
    out = tmp_path / "prefs.jsonl"
    assert collect.main(collect.Args(task="describe", pairs="counterfactual", contrast_share=0.5, out=str(out), n_pairs=24,
                                     annotator_flip_rate=0.0, annotator_temperature=0.1, seed=1)) == 24
    records = list(read_jsonl(out))
    contrasts = [r for r in records if r.get("pair_type") == "contrast:negation_move"]
    assert len(contrasts) >= 4 and all(sorted(r["chosen"].split()) == sorted(r["rejected"].split()) for r in contrasts)


def test_an_annotator_labels_a_pair_of_equal_utility_a_tie_only_when_asked():
    gold = {"x": 1.0, "y": 1.0, "z": 0.0}

    def gold_reward(prompt, response):
        return gold[response]

    coin = SimulatedAnnotator(gold_reward, 0.25, 0.0, seed=0)
    labelled = SimulatedAnnotator(gold_reward, 0.25, 0.0, seed=0, label_ties=True)
    assert labelled("p", "x", "y") == "tie"
    assert {coin("p", "x", "y") for _ in range(50)} == {"a", "b"}  # a coin flip
    assert labelled("p", "x", "z") == "a"  # a decided pair is judged as before
    # equal gold but unequal bias: a biased annotator still prefers (the task's hack)
    pool = AnnotatorPool(gold_reward, lambda p, r: float(r == "y"), (0.5,), 0.25, 0.0, seed=0, label_ties=True)
    pool.seed_pair(0)
    assert pool("p", "x", "y") in ("a", "b") and [pool("p", "x", "y") for _ in range(20)].count("b") > 10
