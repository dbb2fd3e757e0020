"""Best-of-n: sample n responses, keep the one the proxy reward prefers; its KL and an unbiased estimate of its value.

The KL of best-of-n to the policy it samples from is ``ln n - (n - 1) / n`` (Stiennon et al. 2020,
https://arxiv.org/abs/2009.01325), so RL policies can be compared with it at equal KL (Gao et al. 2022). The value
of the best-of-n response is estimated from N >= n samples per prompt without bias (Nakano et al. 2021,
https://arxiv.org/abs/2112.09332, appendix).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import ConfigError
from .tasks import DEFAULT_MAX_NEW_TOKENS


def best_of_n_kl(n: int) -> float:
    """``KL(best-of-n || pi) = ln n - (n - 1) / n`` nats."""
    return math.log(n) - (n - 1) / n


def best_of_n_weights(n_samples: int, n: int) -> np.ndarray:
    """``w_i = C(i - 1, n - 1) / C(N, n)``: probability that the i-th lowest of N samples is the best of n drawn.

    Averaging with these weights over all N samples (sorted by the selection score) is the unbiased estimator
    of ``E[value of the best-of-n sample]`` (Nakano et al. 2021, appendix).
    """
    if not 1 <= n <= n_samples:
        raise ConfigError(f"n must be in [1, {n_samples}], got {n}")
    total = math.comb(n_samples, n)
    return np.array([math.comb(i, n - 1) / total for i in range(n_samples)])


def best_of_n_curve(proxy: np.ndarray, values: dict[str, np.ndarray], ns: list[int]) -> list[dict]:
    """Expected proxy reward and ``values`` (e.g. gold reward) of the best-of-n response chosen by ``proxy``, per n.

    :param proxy: [prompts, N] selection scores of N samples per prompt.
    :param values: name -> [prompts, N] values of the same samples.
    """
    order = np.argsort(proxy, axis=1, kind="stable")
    columns = {"proxy_reward": proxy, **values}
    ranked = {name: np.take_along_axis(np.asarray(v, dtype=np.float64), order, axis=1) for name, v in columns.items()}
    rows = []
    for n in ns:
        w = best_of_n_weights(proxy.shape[1], n)
        rows.append({"n": n, "kl": best_of_n_kl(n), **{name: float((v @ w).mean()) for name, v in ranked.items()}})
    return rows


def power_of_two_ns(n_max: int) -> list[int]:
    """``[1, 2, 4, ..., n_max]``; a :class:`ConfigError` unless ``n_max`` is a power of two."""
    if n_max < 1 or n_max & (n_max - 1):
        raise ConfigError(f"n_max must be a power of two, got {n_max}")
    return [2 ** k for k in range(n_max.bit_length())]


def draw_samples(policy, tokenizer, prompts: list[str], task, n_max: int = 64,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, seed: int = 20_000) -> dict:
    """``n_max`` responses per prompt from ``policy`` with their gold values: ``{"prompts", "responses", "values"}``
    (flat lists, prompt-major; ``values``: the task's gold reward and well-formed share), to rank by any proxy."""
    from .generation import generate_texts  # torch only to sample: the curve's maths and its readers need none

    power_of_two_ns(n_max)
    repeated = [p for p in prompts for _ in range(n_max)]
    responses = generate_texts(policy, tokenizer, repeated, max_new_tokens, seed=seed)
    values = {name: v.tolist() for name, v in task.gold_scores(repeated, responses).items()}
    return {"prompts": repeated, "responses": responses, "values": values, "n_max": n_max}


def rank_samples(samples: dict, reward_fn) -> list[dict]:
    """:func:`best_of_n_curve` of :func:`draw_samples`' responses chosen by ``reward_fn``, for n = 1, 2, 4, ..., n_max."""
    from .scoring import checked_scores

    shape = (-1, samples["n_max"])
    proxy = checked_scores(reward_fn(samples["prompts"], samples["responses"]), samples["prompts"]).reshape(shape)
    values = {name: np.asarray(v).reshape(shape) for name, v in samples["values"].items()}
    return best_of_n_curve(proxy, values, power_of_two_ns(samples["n_max"]))


def sample_best_of_n(policy, tokenizer, prompts: list[str], reward_fn, task, n_max: int = 64,
                     max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, seed: int = 20_000) -> list[dict]:
    """Sample ``n_max`` responses per prompt from ``policy`` and return :func:`best_of_n_curve` for n = 1, 2, 4, ..., n_max.

    The values averaged are the task's gold reward and well-formed share.
    """
    return rank_samples(draw_samples(policy, tokenizer, prompts, task, n_max, max_new_tokens, seed), reward_fn)


def interpolate_best_of_n(curve: list[dict], kl: float) -> float | None:
    """Gold reward of best-of-n at ``kl`` (linear in ``sqrt(KL)``); None beyond the curve's largest n."""
    d = np.sqrt([r["kl"] for r in curve])
    if kl > curve[-1]["kl"]:
        return None
    return float(np.interp(math.sqrt(max(kl, 0.0)), d, [r["gold_reward"] for r in curve]))
