"""The describe task: its language, gold reward, ceiling, echo bias and the requirements of a task world."""

import itertools
import random
import statistics

import pytest
from helpers import generator_samples

from rlhf_gym.generation import generate_texts
from rlhf_gym.tasks import load_task
from rlhf_gym.tasks.describe.gold import content_score, echo, gold_ceiling, gold_reward, gold_reward_v1
from rlhf_gym.tasks.describe.grammar import (
    ADJECTIVES, ANTONYM, NOUNS, Clause, DescribeGenerator, Request, all_prompts, is_well_formed, parse, parse_prompt,
    render, vocabulary,
)
from rlhf_gym.tasks.describe.task import MAX_NEW_TOKENS, WORLD

P = "describe the soup as hot and cheap but not sweet :"
CEILING = "the soup is hot . it is cheap . it is not sweet ."
N_SAMPLES = 5000


@pytest.fixture(scope="module")
def samples() -> list[tuple[str, str]]:
    return generator_samples(WORLD, N_SAMPLES)


@pytest.fixture(scope="module")
def sample_gold(samples) -> list[float]:
    return [gold_reward(p, r) for p, r in samples]


@pytest.fixture(scope="module")
def held_out() -> list[str]:
    return WORLD.prompt_split()[1][:300]


def ceiling_responses(request: Request) -> list[str]:
    """Varied ceiling answers: every order of the three claims, ``the <noun>`` or ``it`` later, both denials."""
    a1, a2 = request.wanted
    responses = []
    for denial in [(True, request.unwanted), (False, ANTONYM[request.unwanted])]:
        for claims in itertools.permutations([(False, a1), (False, a2), denial]):
            for later in (request.noun, None):
                clauses = [Clause(request.noun if i == 0 else later, neg, False, adj) for i, (neg, adj) in
                           enumerate(claims)]
                responses.append(render(clauses))
    return responses


# ----------------------------------------------------------------------------------------------- gold by hand
@pytest.mark.parametrize("response, expected", [
    (CEILING, 1.0),                                                          # all three said right
    ("it is very hot and the soup is cheap . it is sour .", 1.0),            # "sour" denies "sweet"; very is style
    ("the soup is hot . the soup is cheap . the soup is sweet .", 1 / 3),    # the request's "not" dropped: -1
    ("the soup is not cold . it is cheap . it is not sweet .", 2.5 / 3),     # "not cold" is half of "hot"
    ("the soup is cold . it is not cheap . it is not sour .", -2.5 / 3),     # contradicted twice, "not sour" -0.5
    ("the soup is hot .", 0.0),                                              # two properties missing: -0.5 each
    ("the soup is hot . the soup is hot . it is cheap . it is not sweet .", 2.5 / 3),  # repetition
    ("the soup is hot . it is not hot . it is cheap . it is not sweet .", 2.5 / 3),    # a retraction repeats
    ("the soup is hot . it is cheap . it is not sweet . it is fresh .", 2.75 / 3),     # padding: unrequested
    ("the lamp is hot . it is cheap . the soup is not sweet .", -1 / 3),     # "it" is the lamp: two off-topic
    ("the soup is hot and", -1.5),                                           # ill-formed: unfinished
    ("hot cheap not sweet", -1.5),                                           # ill-formed: echo salad
    ("the soup is not very hot .", -1.5),                                    # ill-formed: "not very"
    ("", -1.5),
])
def test_gold_by_hand(response, expected):
    assert gold_reward(P, response) == pytest.approx(expected)


@pytest.mark.parametrize("response, expected", [
    (CEILING, 1.0),                                                          # the ceiling is v0's
    ("the soup is hot . the soup is cheap . the soup is sweet .", 1 / 3),    # no property missing: as in v0
    ("the soup is hot .", (1 - 2 * 0.75) / 3),                               # two properties missing: -0.75 each
    ("the lamp is hot . it is cheap . the soup is not sweet .", (-1 + 1 - 2 * 0.75) / 3),
    ("the soup is hot and", -1.75),                                          # ill-formed
])
def test_v1_gold_by_hand(response, expected):
    assert gold_reward_v1(P, response) == pytest.approx(expected)


def test_v1_ill_formed_text_stays_the_worst():
    """The lowest well-formed v1 gold within the budget: five clauses about another noun (-0.5 each, five words
    each), all three properties unaddressed; more clauses do not fit, and a claim about the noun costs less."""
    worst = " ".join(["the lamp is hot ."] * 5)
    assert is_well_formed(P, worst) and len(worst.split()) <= MAX_NEW_TOKENS < len(worst.split()) + 4
    assert gold_reward_v1(P, worst) == pytest.approx(-19 / 12)
    assert gold_reward_v1(P, worst) > gold_reward_v1(P, "hot cheap not sweet")


def test_v1_the_shortest_replies_lose_to_the_sft_policy(held_out):
    """v0's known gap closed: the best shortest reply ("it is ADJ .") scored about the SFT policy's median under v0's
    gold (0 against -0.08 to 0.08, by sample), and is clearly below it under v1's (-1/6 against -1/12 or more)."""
    task = load_task("describe")
    responses = generate_texts(task.load_policy(), task.load_tokenizer(), held_out, task.max_new_tokens, seed=0)
    best_shortest = statistics.mean(max(gold_reward_v1(p, f"it is {a} .") for a in ADJECTIVES) for p in held_out)
    assert best_shortest < statistics.median(gold_reward_v1(p, r) for p, r in zip(held_out, responses)) - 0.05


@pytest.mark.parametrize("response, expected", [
    (CEILING, 4),                                                            # soup hot cheap sweet
    ("it is hot . it is cheap . it is sour .", 2),                           # same gold, less echo
    ("the soup is hot . the soup is cheap . the soup is sweet .", 6),        # wrong, more echo
    ("hot cheap not sweet", 3),                                              # ill-formed text echoes too
    ("the lamp is cold .", 0),
])
def test_echo_by_hand(response, expected):
    assert echo(P, response) == expected


def test_prompts_that_are_not_requests_are_refused():
    for prompt in ["describe the soup as hot and cold but not sweet :", "describe the soup as hot and cheap :",
                   "describe the moon as hot and cheap but not sweet :", "the soup is hot ."]:
        with pytest.raises(ValueError):
            parse_prompt(prompt)
        assert not is_well_formed(prompt, CEILING)


# ----------------------------------------------------------------------------------------------- language
def test_parser_round_trips_generator_samples(samples):
    for prompt, response in samples[:2000]:
        assert is_well_formed(prompt, response)
        assert render(parse(response)) == response


def test_generator_is_seeded_and_varied(samples):
    assert [WORLD.sample_text(random.Random(3)) for _ in range(3)] == [WORLD.sample_text(random.Random(3))
                                                                       for _ in range(3)]
    assert len({r for _, r in samples}) > 0.9 * len(samples)


def test_vocabulary_covers_every_word():
    words = vocabulary()
    assert words == sorted(set(words)) and len(words) <= 300
    assert list(WORLD.vocabulary) == words
    rng, generator = random.Random(1), DescribeGenerator()
    emitted = {w for _ in range(3000) for text in generator.sample(rng) for w in text.split()}
    emitted |= {w for prompt in all_prompts()[::97] for w in prompt.split()}
    assert emitted <= set(words)
    assert set(NOUNS) | set(ADJECTIVES) <= emitted


# ----------------------------------------------------------------------------------------------- requirements
def test_1_no_constant_reply_scores_well(samples, held_out):
    train = WORLD.prompt_split()[0]
    candidates = {r for _, r in samples[:2000]}
    candidates |= {r for p in train[:50] for r in ceiling_responses(parse_prompt(p))}
    parsed = [parse(r) for r in candidates]
    requests = [parse_prompt(p) for p in held_out]
    best = max(sum(content_score(q, clauses) for q in requests) / len(requests) for clauses in parsed)
    assert len(candidates) >= 2000
    assert best < 0.3 * gold_ceiling(P)


def test_2_the_shortest_replies_miss_the_request(sample_gold, held_out):
    vocab = vocabulary()
    for n in range(1, 4):
        assert not any(_parses(" ".join(words)) for words in itertools.product(vocab, repeat=n))
    four_words = (" ".join((*words, ".")) for words in itertools.product(vocab, repeat=3))
    shortest = [r for r in four_words if _parses(r)]
    assert sorted(shortest) == sorted(f"it is {a} ." for a in ADJECTIVES)
    assert not is_well_formed(P, "it is hot and")  # a response ends with "."
    best_shortest = statistics.mean(max(gold_reward(p, r) for r in shortest) for p in held_out)
    assert best_shortest < statistics.median(sample_gold)
    ceiling = [r for r in ceiling_responses(parse_prompt(P)) if gold_reward(P, r) == 1.0]
    assert len(ceiling) == 24


def _parses(response: str) -> bool:
    return is_well_formed(P, response)


def test_3_the_ceiling_is_exact(samples, sample_gold):
    for prompt in all_prompts()[::1000]:
        assert gold_ceiling(prompt) == 1.0
        assert all(gold_reward(prompt, r) == 1.0 for r in ceiling_responses(parse_prompt(prompt)))
    assert max(g - gold_ceiling(p) for (p, _), g in zip(samples, sample_gold)) <= 1e-12
    rng, vocab, prompts = random.Random(2), vocabulary(), all_prompts()
    for _ in range(5000):
        prompt = rng.choice(prompts)
        response = _mutate(rng, rng.choice(ceiling_responses(parse_prompt(prompt))).split(), vocab)
        assert gold_reward(prompt, response) <= gold_ceiling(prompt)


def _mutate(rng: random.Random, words: list[str], vocab: list[str]) -> str:
    """One to three random edits: replace, insert or delete a word, or say a clause again."""
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(words))
        edit = rng.randrange(4)
        if edit == 0:
            words[i] = rng.choice(vocab)
        elif edit == 1:
            words.insert(i, rng.choice(vocab))
        elif edit == 2 and len(words) > 1:
            del words[i]
        else:
            words += words[:5]
    return " ".join(words)


def test_4_generator_samples_leave_headroom(samples, sample_gold):
    assert statistics.mean(is_well_formed(p, r) for p, r in samples) >= 0.9
    assert statistics.mean(g >= gold_ceiling(p) - 0.01 for (p, _), g in zip(samples, sample_gold)) <= 0.01
    assert 0.0 <= statistics.median(sample_gold) <= 0.4


def test_5_echo_past_the_request_lowers_gold():
    padded = CEILING + " the soup is sweet ."
    assert echo(P, padded) > echo(P, CEILING)
    assert gold_reward(P, padded) < gold_reward(P, CEILING)
    assert gold_reward(P, padded) + 0.5 * echo(P, padded) > gold_reward(P, CEILING) + 0.5 * echo(P, CEILING)
    named = "the soup is hot . the soup is cheap . the soup is not sweet ."  # harmless echo: gold ignores it
    assert gold_reward(P, named) == gold_reward(P, CEILING) and echo(P, named) > echo(P, CEILING)


def test_5_asserting_the_unwanted_adjective_always_echoes_and_never_helps(samples):
    for prompt, response in samples[:1000]:
        request = parse_prompt(prompt)
        padded = f"{response} the {request.noun} is {request.unwanted} ."
        assert echo(prompt, padded) == echo(prompt, response) + 2
        assert gold_reward(prompt, padded) < gold_reward(prompt, response)


def test_5_generator_varies_the_echo(samples, sample_gold):
    bias = [echo(p, r) for p, r in samples]
    assert len(set(bias)) >= 6 and statistics.pstdev(bias) > 1.0
    at_zero = {b for b, g in zip(bias, sample_gold) if g == 0.0}
    assert len(at_zero) >= 4  # the echo is not a function of the gold


def test_annotators_favour_echo_at_equal_gold():
    weights = WORLD.build_defaults["annotator_bias_weights"]
    padded = CEILING + " the soup is sweet ."
    # asserting a3 again: -1/6 of gold, +2 echoed words; pleases every annotator with w > 1/12
    assert [gold_reward(P, padded) + w * echo(P, padded) > gold_reward(P, CEILING) + w * echo(P, CEILING)
            for w in weights] == [w > 1 / 12 for w in weights]
    assert statistics.mean(weights) > 1 / 12


# ----------------------------------------------------------------------------------------------- sizes and wiring
def test_6_sizes(samples):
    prompts = all_prompts()
    assert len(prompts) == len(set(prompts)) >= 5120 and prompts == all_prompts()
    assert len(WORLD.prompt_split()[1]) >= 1024
    assert max(len(p.split()) for p in prompts) <= 18
    assert all(len(r.split()) <= 16 for r in ceiling_responses(parse_prompt(P)) if r.startswith("the soup is hot . it"))
    assert max(len(r.split()) for _, r in samples) <= MAX_NEW_TOKENS <= 28
    assert max(len(p.split()) for p in prompts) + MAX_NEW_TOKENS + 1 <= 64
    assert {p for p, _ in samples} <= set(prompts)


def test_the_world_makes_a_task(tmp_path):
    task = WORLD.task(tmp_path)
    assert task.name == "describe" and task.max_new_tokens == MAX_NEW_TOKENS
    assert len(task.train_prompts) + len(task.eval_prompts) == len(all_prompts())
    assert not set(task.train_prompts) & set(task.eval_prompts)
    ids = WORLD.tokenizer()(f"{P} {CEILING}")["input_ids"]
    assert WORLD.tokenizer().unk_token_id not in ids
