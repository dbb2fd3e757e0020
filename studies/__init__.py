"""Experiments built on rlhf-gym's algorithms: the top floor of the package (``rlhf_gym.studies``).

One command module per study, each with an ``Args`` dataclass and a ``main(args)`` (see :mod:`rlhf_gym.commands`):

* :mod:`.sweep`: the beta sweep (reward against KL, Gao et al.'s laws), with best-of-n beside it;
* :mod:`.iterated`: iterated (online) RLHF, rounds of collect -> reward model -> PPO;
* :mod:`.rm_scaling`: proxies of several sizes and data, best-of-n and PPO against each (Gao et al. 2022, Figure 1);
* :mod:`.diverse_ensembles`: ensembles of diverse reward models against over-optimisation (Coste et al. 2023);
* :mod:`.leaderboard`: every method on one task (or a suite) at a matched budget, scored by the benchmark protocol;
* :mod:`.suite_hacks`: the report on the suite's designed reward hacks;
* :mod:`.best_of_n`: the best-of-n curve of a proxy against gold;
* :mod:`.analysis`: the studies' fits, run store, tables and figures.

Layers (checked by ``tests/test_architecture.py``): ``studies -> benchmarks -> agents -> envs -> core``; nothing
below imports a study.
"""
