"""The ``rlhf-gym`` commands of the core (collect, label, train-rm, build-task, build-ensemble, best-of-n, summarize).

One module per command: its docstring is the command's help, ``Args`` its documented options, ``main(args)`` the
work; :data:`rlhf_gym.command_registry.COMMANDS` maps command names to modules, and ``scripts/`` holds one thin entry point
each. The commands that train agents live in ``agents/`` (``rlhf_gym`` never imports it).
"""
