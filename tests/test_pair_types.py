"""rlhf_gym.pair_types on a toy world, by hand: which families a pair differs in, agreement per pair type (gold ties
left out, proxy ties wrong), and the probe table of ceiling answers against their one-error edits."""

import random
from pathlib import Path

import numpy as np
import pytest

from rlhf_gym.pair_types import (LENGTH_FORM, agreement_by_type, content_probes, form_probe, markdown_agreement,
                                 pair_families)
from rlhf_gym.tasks.world import TaskWorld


def profile(prompt: str, response: str) -> dict[str, int]:
    words = response.split()
    return {"bad": words.count("bad"), "dup": len(words) - len(set(words))}


def add_bad(prompt: str, response: str, rng: random.Random) -> str | None:
    words = response.split()
    places = [i for i, w in enumerate(words) if w == "good"]
    if not places:
        return None
    words[rng.choice(places)] = "bad"
    return " ".join(words)


def add_dup(prompt: str, response: str, rng: random.Random) -> str | None:
    words = response.split()
    return " ".join([words[0], *words[:-1]]) if len(words) > 1 and len(set(words)) == len(words) else None


# gold: +1 per distinct "good", -1 per "bad", -0.5 per repeat; ill-formed ("!") -2
TOY = TaskWorld(name="toy", vocabulary=("bad", "good", "fine", "!"), sample_text=lambda rng: ("say", "good"),
                all_prompts=lambda: ["say"], artifacts_dir=Path("."),
                gold_reward=lambda p, r: (len(set(r.split()) & {"good"}) - r.split().count("bad")
                                          - 0.5 * profile(p, r)["dup"] - 2.0 * ("!" in r)),
                is_well_formed=lambda p, r: "!" not in r, gold_ceiling=lambda p: 1.0,
                bias_probe=lambda p, k: " ".join(["good", "fine", "fine2"][: 2 + k]),
                content_errors={"bad": add_bad, "dup": add_dup}, content_profile=profile)


def test_pair_families():
    assert pair_families(TOY, "say", "good fine", "good bad") == ("bad",)
    assert pair_families(TOY, "say", "good good", "bad fine") == ("bad", "dup")
    assert pair_families(TOY, "say", "good", "good fine fine3") == ()  # same errors: length only
    assert pair_families(TOY, "say", "good !", "bad") == ()  # an ill-formed response: a form difference


def test_agreement_by_type_by_hand():
    pairs = [("good fine", "good bad", 2.0, 1.0),     # bad: gold +1, proxy + -> agrees
             ("good fine", "bad fine", 0.0, 1.0),     # bad: gold +1, proxy - -> disagrees
             ("good good", "bad fine", 1.0, 1.0),     # bad and dup: gold 0.5 - (-1) = +1.5, proxy tie -> disagrees
             ("good", "fine fine2", 3.0, 0.0),        # length/form: gold +1, proxy + -> agrees
             ("good", "good fine", 5.0, 0.0),         # gold tie (1 vs 1): left out
             ("good !", "good", 0.0, 1.0)]            # ill-formed: gold -1 - 1 = -2 < 0, proxy - -> agrees, form pair
    a, b, pa, pb = zip(*pairs)
    table = agreement_by_type(TOY, ["say"] * len(pairs), a, b, pa, pb)
    assert table["overall"] == {"pairs": 5, "share": 1.0, "agreement": 3 / 5}
    assert table[LENGTH_FORM] == {"pairs": 2, "share": 2 / 5, "agreement": 1.0}
    assert table["bad"] == {"pairs": 3, "share": 3 / 5, "agreement": 1 / 3}
    assert table["dup"] == {"pairs": 1, "share": 1 / 5, "agreement": 0.0}
    assert table["gold_ties"] == 1
    text = markdown_agreement(table)
    assert "| bad | 3 | 0.60 | 0.333 |" in text and "| length_form | 2 | 0.40 | 1.000 |" in text
    assert text.endswith("1 gold ties left out.")


def test_a_type_without_pairs_has_no_agreement():
    table = agreement_by_type(TOY, ["say"], ["good"], ["fine"], [1.0], [0.0])
    assert table["bad"] == {"pairs": 0, "share": 0.0, "agreement": None}
    assert "| bad | 0 | 0.00 | — |" in markdown_agreement(table)


def test_content_probes_by_hand():
    # the ceiling "good fine"; bad -> "bad fine" (gold 1 -> -1), dup -> "good good" (gold 1 -> 0.5)
    def score(prompts, responses):
        return np.array([{"good fine": 1.0, "bad fine": 3.0, "good good": 0.0}[r] for r in responses])

    table = content_probes(TOY, score, ["say", "say"])
    assert table["bad"] == {"prompts": 2, "prefers_ceiling": 0.0, "margin": -2.0, "gold_margin": 2.0}
    assert table["dup"] == {"prompts": 2, "prefers_ceiling": 1.0, "margin": 1.0, "gold_margin": 0.5}


def test_the_form_probe_puts_the_ceiling_answer_against_itself_garbled():
    import random
    from dataclasses import replace

    from rlhf_gym.pairing import garble_response

    strict = replace(TOY, is_well_formed=lambda p, r: r.split()[:2] == ["good", "fine"])  # the ceiling's own order

    def proxy(prompts, responses):
        return np.array([1.0 if r == "good fine" else 0.0 for r in responses])

    row = form_probe(strict, proxy, ["say"] * 5)
    rng = random.Random(0)  # the probe's draws, replayed: five garbles of "good fine", each ill-formed
    garbled = [garble_response("say", "good fine", lambda r: strict.is_well_formed("say", r), rng) for _ in range(5)]
    assert all(g is not None and not strict.is_well_formed("say", g) for g in garbled)
    gold_margin = np.mean([TOY.gold_reward("say", "good fine") - TOY.gold_reward("say", g) for g in garbled])
    assert row == {"prompts": 5, "prefers_ceiling": 1.0, "margin": 1.0, "gold_margin": pytest.approx(gold_margin)}
    assert form_probe(strict, lambda p, r: np.zeros(len(r)), ["say"])["prefers_ceiling"] == 0.0  # a tie: not preferred
    # TOY's grammar only refuses "!", which no word of the prompt or the answer is: no garble breaks its ceiling answer
    assert form_probe(TOY, proxy, ["say"]) == {"prompts": 0, "prefers_ceiling": None, "margin": None, "gold_margin": None}


def test_content_probes_need_ceiling_answers():
    from dataclasses import replace

    with pytest.raises(ValueError, match="no ceiling answers"):
        content_probes(replace(TOY, bias_probe=None), lambda p, r: np.zeros(len(r)), ["say"])
