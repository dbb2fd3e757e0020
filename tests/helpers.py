"""Test helpers shared by several test files."""


class NoCallback:
    """The minimal callback interface that ``TokenPPO.collect_rollouts`` calls, doing nothing."""

    def on_rollout_start(self):
        pass

    def on_rollout_end(self):
        pass

    def update_locals(self, _):
        pass

    def on_step(self):
        return True
