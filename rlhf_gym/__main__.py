"""``python -m rlhf_gym <command>``: the same as the installed ``rlhf-gym`` command."""

from .cli import main

main()
