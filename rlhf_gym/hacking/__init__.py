"""Reward over-optimisation, measured: beta sweeps, best-of-n and the Gao et al. (2022) fit.

One module per concept, each imported on its own (no SB3; the training loop is ``agents/sweep.py``, ``rlhf-gym sweep``):

* :mod:`.gao`: the law ``R(d) = d (alpha - b ln d)`` with ``d = sqrt(KL)``, and its least-squares fit;
* :mod:`.best_of_n`: the best-of-n baseline, its analytic KL and its unbiased estimator;
* :mod:`.run_store`: one JSON record per finished (beta, seed) run;
* :mod:`.tables`: markdown summaries of a sweep and of a best-of-n curve;
* :mod:`.figures`: reward against sqrt(KL), over training, and sweep against sweep (matplotlib).
"""
