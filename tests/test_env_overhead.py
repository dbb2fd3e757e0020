"""rlhf-gym env-overhead: the batched env's own time per step in both scoring modes, split into bookkeeping and scoring."""

from rlhf_gym.benchmarks.env_overhead import measure


def test_the_env_is_timed_in_both_scoring_modes_on_the_same_samples():
    overhead = measure(num_envs=8, repeats=1, seed=0)
    on_finish, deferred = overhead.modes
    assert (on_finish.mode, deferred.mode) == ("on_finish", "deferred")
    assert deferred.scoring_calls == 1 <= on_finish.scoring_calls  # one pass per batch, or one per step where rows end
    for timing in overhead.modes:
        assert timing.bookkeeping_per_step > 0 and timing.scoring_per_batch > 0
        assert timing.per_step(overhead.steps) > timing.bookkeeping_per_step
    lines = overhead.lines()
    assert len(lines) == 3 and lines[1].strip().startswith("on_finish:") and lines[2].strip().startswith("deferred:")
