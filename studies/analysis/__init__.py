"""Reward over-optimisation, measured: beta sweeps, best-of-n, Gao et al.'s laws, iterated RLHF, proxies and ensembles.

One module per concept, each imported on its own (no SB3; the training loops are ``studies/sweep.py``,
``studies/iterated.py``, ``studies/rm_scaling.py`` and ``studies/diverse_ensembles.py``):

* :mod:`.gao`: the laws ``R(d) = d (alpha - b ln d)`` (RL) and ``d (alpha - b d)`` (best-of-n), ``d = sqrt(KL)``, and their
  least-squares fits;
* :mod:`.best_of_n`: the best-of-n baseline, its analytic KL and its unbiased estimator, over samples any proxy ranks;
* :mod:`.run_store`: one JSON record per finished (beta, seed) run;
* :mod:`.tables`: markdown summaries of a sweep and of a best-of-n curve, mean ± std over seeds;
* :mod:`.figures`: reward against sqrt(KL), over training, sweep against sweep, Gao's Figure 1 and coefficients;
* :mod:`.rounds`: the run store, table and figure of iterated (online) RLHF;
* :mod:`.proxies`: proxy reward models of other sizes, data and seeds, trained and measured alike;
* :mod:`.scaling`: one proxy's Gao fits and gold peak (the reward-model scaling grid);
* :mod:`.diversity`: the kinds of diverse ensemble and their members' disagreement.
"""
