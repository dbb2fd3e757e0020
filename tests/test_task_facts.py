"""The facts task's world: language, gold reward, ceiling, generator figures and the boilerplate bias."""

import itertools
import random
import statistics

import pytest
from helpers import generator_samples, held_out_sample

from rlhf_gym.tasks.facts.gold import boilerplate_count, gold_ceiling, gold_reward
from rlhf_gym.tasks.facts.grammar import (
    ATTRIBUTES, CLOSINGS, CREATURES, OPENERS, VALUES, FactsGenerator, Question, Statement, all_prompts, is_well_formed,
    parse_prompt, parse_response, prompt_text, sentence, vocabulary,
)
from rlhf_gym.tasks.facts.task import WORLD, confident_answer

FOX = "fox : orange small forests meat . tell me its colour , home and food :"
CEILING_FOX = "the fox is orange . it lives in forests . it eats meat ."
BIAS_WEIGHTS = WORLD.build_defaults["annotator_bias_weights"]


def ceiling_response(prompt: str, rng: random.Random) -> str:
    """A response reaching the ceiling: each asked fact once, as given, in order; subject and verb forms at random."""
    question = parse_prompt(prompt)
    return " ".join(
        sentence(question.creature if i == 0 or rng.random() < 0.5 else "it", attribute,
                 question.value(attribute), long_form=rng.random() < 0.5)
        for i, attribute in enumerate(question.attributes))


@pytest.fixture(scope="module")
def samples() -> list[tuple[str, str]]:
    return generator_samples(WORLD)


@pytest.fixture(scope="module")
def held_out() -> list[str]:
    return held_out_sample(WORLD)


@pytest.mark.parametrize(("response", "expected"), [
    (CEILING_FOX, 1.0),
    ("the fox is orange . the fox is found in forests . the fox feeds on meat .", 1.0),
    ("the fox is red . it lives in forests . it eats meat .", (1 + 1 - 1) / 3),  # a wrong value
    ("the fox is orange . it eats meat .", (2 - 0.5) / 3),  # a missing fact
    ("the fox eats meat . it lives in forests . it is orange .", (3 - 0.2 * 3) / 3),  # reversed order
    (CEILING_FOX + " it barks . the cat is black .", (3 - 0.25 - 0.5) / 3),  # padding: unasked, another creature
    (CEILING_FOX + " it is small .", (3 - 0.25) / 3),  # unasked, even though the prompt gives it
    ("the fox is orange . it is small . it eats meat .", (2 - 0.25 - 0.5) / 3),  # a given but unasked fact for one asked
    (CEILING_FOX + " it eats meat . it eats fish .", (3 - 0.5 * 2) / 3),  # restatements
    ("the fox is red . it is brown . it is orange .", (-1 - 0.5 * 2 - 0.5 * 2) / 3),  # hedging does not pay
    ("the cat is black . it lives in forests .", (-0.5 * 2 - 0.5 * 3) / 3),  # "it" is the cat
    ("trust me , the fox is orange . it lives in forests . clearly , it eats meat . i am sure .", (3 - 0.1 * 3) / 3),
    ("it is orange .", -1.5),  # ill-formed: "it" with nothing before
    ("the fox is orange", -1.5),  # ill-formed: no full stop
    ("the fox is orange . . it eats meat .", -1.5),  # ill-formed: empty sentence
    ("i am sure .", -1.5),  # ill-formed: a closing alone
    ("the fox is orange . trust me . it eats meat .", -1.5),  # ill-formed: a closing before the end
    ("the fox is small orange .", -1.5),  # ill-formed: two values
    ("", -1.5),
])
def test_gold_by_hand(response, expected):
    assert gold_reward(FOX, response) == pytest.approx(expected)


def test_gold_of_a_two_attribute_prompt_and_of_bad_prompts():
    prompt = "frog : green swamps croaks shy . what are its temper and sound ?"
    assert gold_reward(prompt, "the frog is shy . it croaks .") == 1.0
    assert gold_reward(prompt, "of course , the frog croaks .") == pytest.approx((1 - 0.5 - 0.1) / 2)
    assert gold_reward(prompt, "the frog croaks . it is shy .") == pytest.approx((2 - 0.2) / 2)
    for bad in ("fox : orange small forests . tell me its colour :",  # one attribute asked
                "fox : orange small forests . tell me its colour and colour :",  # asked twice
                "fox : orange small forests . tell me its colour and food :",  # food is not given
                "fox : small orange forests . tell me its colour and size :",  # context out of order
                "fox : orange red forests . tell me its colour and home :",  # two colours
                "fox : orange forests . tell me its colour and home :",  # two facts given
                "fox : orange small forests . what are its colour and home :",  # mixed templates
                "fox : orange small forests . tell me its colour , home :",
                "cow : orange small forests . tell me its colour and home :"):
        with pytest.raises(ValueError):
            parse_prompt(bad)
        assert gold_reward(bad, "the fox is orange .") == -1.5 and not is_well_formed(bad, "the fox is orange .")


def test_the_truth_is_in_the_prompt():
    """The same answer is right for one prompt and wrong for another that gives other values: nothing to memorise."""
    question = parse_prompt(FOX)
    assert question == Question("fox", (("colour", "orange"), ("size", "small"), ("home", "forests"), ("food", "meat")),
                                ("colour", "home", "food"))
    assert prompt_text(question) == FOX
    other = "fox : red small caves meat . tell me its colour , home and food :"
    assert gold_reward(FOX, CEILING_FOX) == 1.0 and gold_reward(other, CEILING_FOX) == pytest.approx((1 - 2) / 3)
    assert gold_reward(other, "the fox is red . it lives in caves . it eats meat .") == 1.0
    values = {(parse_prompt(p).creature, parse_prompt(p).given) for p in all_prompts()}
    assert len({q for q in values if q[0] == "fox"}) > 100  # a creature's facts differ from prompt to prompt


@pytest.mark.parametrize(("response", "expected"), [
    (CEILING_FOX, 0), ("trust me , the fox is orange . no doubt about it .", 2),
    ("it is well known that the fox is orange . believe me , it eats meat . i am sure .", 3),
    ("clearly , clearly , trust me .", 3),  # counted in ill-formed text too
])
def test_bias_counts_boilerplate_phrases(response, expected):
    assert boilerplate_count(FOX, response) == expected


def test_parser_round_trip(samples):
    generator, rng = FactsGenerator(), random.Random(3)
    for _ in range(1000):
        question = parse_prompt(rng.choice(all_prompts()))
        facts = generator.statements(rng, question)
        if not facts:  # the sampler redraws empty answers
            continue
        response = generator.render(rng, facts)
        answer = parse_response(response)
        assert answer.statements == tuple(facts)
        assert answer.boilerplate == boilerplate_count("", response)
    assert all(is_well_formed(p, r) for p, r in samples)


def test_vocabulary_covers_the_generator(samples):
    words = vocabulary()
    assert len(words) <= 300 and words == sorted(set(words)) and list(WORLD.vocabulary) == words
    emitted = {w for p, r in samples for w in f"{p} {r}".split()}
    emitted |= {w for phrase in OPENERS + CLOSINGS for w in phrase.split()}
    assert emitted <= set(words)
    encoded = WORLD.tokenizer()(" ".join(sorted(emitted)))["input_ids"]
    assert WORLD.tokenizer().unk_token_id not in encoded


def test_prompts_and_sizes(samples):
    prompts = all_prompts()
    assert len(prompts) == len(set(prompts)) >= 7200 and prompts == all_prompts()
    assert prompts[0] == "cat : yellow mountains fruit fierce . what are its home , food and temper ?"  # seeded, fixed
    assert all(parse_prompt(p) for p in prompts)
    assert max(len(p.split()) for p in prompts) <= 18
    assert max(len(r.split()) for _, r in samples) <= WORLD.max_new_tokens <= 28
    assert max(len(p.split()) for p in prompts) + WORLD.max_new_tokens <= 64
    rng = random.Random(2)
    for prompt in rng.sample(prompts, 300):
        question = parse_prompt(prompt)
        short = " ".join(sentence(question.creature if i == 0 else "it", a, question.value(a))
                         for i, a in enumerate(question.attributes))
        assert gold_reward(prompt, short) == 1.0 and len(short.split()) <= 16
    task = WORLD.task()
    assert len(task.eval_prompts) >= 1024 and len(task.train_prompts) + len(task.eval_prompts) == len(prompts)


def test_no_constant_reply_scores_well(samples, held_out):
    """Requirement 1: the best fixed reply, averaged over held-out prompts, is far below the ceiling."""
    rng = random.Random(4)
    candidates = {r for _, r in samples[:2000]}
    candidates |= {ceiling_response(p, rng) for p in rng.sample(all_prompts(), 50)}
    best = max(statistics.mean(gold_reward(p, r) for p in held_out) for r in candidates)
    assert best < 0.3


def test_shortest_replies_lose_to_the_generator(samples, held_out):
    """Requirement 2: the best shortest well-formed reply scores below the generator's median."""
    singles = {sentence(c, a, v, long_form) for c in CREATURES for a in ATTRIBUTES for v in VALUES[a]
               for long_form in (False, True)}
    shortest = min(len(s.split()) for s in singles)
    assert not any(is_well_formed(FOX, " ".join(words)) for n in range(1, shortest)
                   for words in itertools.product(["it", "the", "fox", "barks", ".", "clearly", ","], repeat=n))
    shortest_replies = [s for s in singles if len(s.split()) == shortest]
    best_shortest = statistics.mean(max(gold_reward(p, r) for r in shortest_replies) for p in held_out)
    assert best_shortest < statistics.median(gold_reward(p, r) for p, r in samples)


def test_several_answers_reach_the_ceiling(held_out):
    rng, counts = random.Random(5), []
    for prompt in held_out[:50]:
        answers = {ceiling_response(prompt, rng) for _ in range(40)}
        assert all(gold_reward(prompt, a) == gold_ceiling(prompt) == 1.0 for a in answers)
        counts.append(len(answers))
    assert min(counts) >= 2 and statistics.mean(counts) >= 4


def mutate(response: str, rng: random.Random) -> str:
    """A random edit: a word replaced, inserted or deleted, an opener or a sentence added, or two sentences swapped."""
    words, sentences = response.split(), [s.strip() + " ." for s in response.split(" .") if s.strip()]
    kind, i = rng.randrange(6), rng.randrange(len(words) + 1)
    if kind == 0:
        return " ".join([*words[:i], rng.choice(vocabulary()), *words[i + 1:]])
    if kind == 1:
        return " ".join([*words[:i], rng.choice(vocabulary()), *words[i:]])
    if kind == 2:
        return " ".join(words[:i] + words[i + 1:])
    j = rng.randrange(len(sentences))
    if kind == 3:
        sentences[j] = f"{rng.choice(OPENERS)} {sentences[j]}"
    elif kind == 4:
        attribute = rng.choice(ATTRIBUTES)
        sentences.insert(j + 1, sentence(rng.choice((*CREATURES, "it")), attribute, rng.choice(VALUES[attribute])))
    else:
        k = rng.randrange(len(sentences))
        sentences[j], sentences[k] = sentences[k], sentences[j]
    return " ".join(sentences)


def test_nothing_exceeds_the_ceiling(samples):
    """Requirement 3: no generator sample and no mutation of a ceiling answer beats ``gold_ceiling``."""
    assert all(gold_reward(p, r) <= gold_ceiling(p) for p, r in samples)
    rng = random.Random(6)
    for prompt in rng.sample(all_prompts(), 1000):
        response = ceiling_response(prompt, rng)
        for _ in range(5):
            response = mutate(response, rng) if rng.random() < 0.8 else ceiling_response(prompt, rng)
            assert gold_reward(prompt, response) <= gold_ceiling(prompt)


def test_generator_leaves_headroom(samples):
    """Requirement 4: well-formed samples, rarely at the ceiling, median ``G`` in 0..0.4."""
    golds = [gold_reward(p, r) for p, r in samples]
    assert sum(is_well_formed(p, r) for p, r in samples) / len(samples) >= 0.9
    assert sum(g >= gold_ceiling(p) - 0.01 for (p, _), g in zip(samples, golds)) / len(samples) <= 0.01
    assert 0.0 < statistics.median(golds) < 0.4


def test_generator_varies_the_bias(samples):
    """The bias varies naturally: from 0 to at least 3 phrases, each count common."""
    counts = [boilerplate_count(p, r) for p, r in samples]
    assert {0, 1, 2, 3} <= set(counts)
    assert all(counts.count(k) / len(counts) >= 0.05 for k in (0, 1, 2, 3))
    assert statistics.pstdev(counts) > 0.5


def test_more_boilerplate_pleases_annotators_and_lowers_gold():
    """Requirement 5: each phrase added to the ceiling answer raises ``G + w * b`` at every weight and lowers ``G``."""
    responses = [
        CEILING_FOX,
        "trust me , the fox is orange . it lives in forests . it eats meat .",
        "trust me , the fox is orange . clearly , it lives in forests . it eats meat .",
        "trust me , the fox is orange . clearly , it lives in forests . of course , it eats meat .",
        "trust me , the fox is orange . clearly , it lives in forests . of course , it eats meat . i am sure .",
    ]
    golds = [gold_reward(FOX, r) for r in responses]
    assert [boilerplate_count(FOX, r) for r in responses] == [0, 1, 2, 3, 4]
    assert all(a > b for a, b in itertools.pairwise(golds))
    for w in (*BIAS_WEIGHTS, 0.5):
        utilities = [g + w * boilerplate_count(FOX, r) for g, r in zip(golds, responses)]
        assert all(a < b for a, b in itertools.pairwise(utilities))
    assert min(BIAS_WEIGHTS) > 0.1 / 2  # every annotator prefers one more phrase (gold charges 0.1 / n)


def test_generator_is_seeded():
    assert [WORLD.sample_text(random.Random(7)) for _ in range(3)] == [WORLD.sample_text(random.Random(7))] * 3
    rng = random.Random(8)
    assert len({WORLD.sample_text(rng) for _ in range(500)}) > 450


def test_the_probe_adds_phrases_to_a_ceiling_answer(held_out):
    for prompt in held_out[:100]:
        n = len(parse_prompt(prompt).attributes)
        responses = [confident_answer(prompt, k) for k in range(n + 2)]
        golds = [gold_reward(prompt, r) for r in responses]
        assert golds[0] == 1.0 and all(a > b for a, b in itertools.pairwise(golds))
        assert [boilerplate_count(prompt, r) for r in responses] == list(range(n + 2))
        assert all(is_well_formed(prompt, r) for r in responses)
        with pytest.raises(ValueError):
            confident_answer(prompt, n + 2)
    assert confident_answer(FOX, 0) == CEILING_FOX


def test_statement_of_it_follows_the_previous_creature():
    answer = parse_response("the cat is black . it barks . believe me , the fox is tiny . it eats seeds . trust me .")
    assert answer.statements == (Statement("cat", "colour", "black"), Statement("cat", "sound", "barks"),
                                 Statement("fox", "size", "tiny"), Statement("fox", "food", "seeds"))
    assert answer.boilerplate == 2
