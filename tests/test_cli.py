"""The command line's one error policy: user errors are one line naming the path (exit 1), bad options exit 2,
bugs keep their traceback; the installed ``rlhf-gym`` command dispatches to every command module."""

import importlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import fake_run

import rlhf_gym
from rlhf_gym.cli import arg, main, parse_dataclass, run
from rlhf_gym.command_registry import COMMANDS, GROUPS
from rlhf_gym.errors import ConfigError, DataError, MissingFileError
from rlhf_gym.metrics import format_number


@dataclass
class Args:
    path: str = arg("x", "a path")
    count: int = arg(1, "a positive count")

    def __post_init__(self):
        if self.count < 1:
            raise ConfigError(f"--count must be >= 1, got {self.count}")


def run_with(action, argv=()):
    return run(action, Args, "test command", list(argv))


@pytest.mark.parametrize("error, expected", [
    (DataError("prefs.jsonl:3: 'chosen' is missing"), "error: prefs.jsonl:3: 'chosen' is missing"),
    (MissingFileError("checkpoint not found: a.zip"), "error: checkpoint not found: a.zip"),
    (ConfigError("--beta must be >= 0"), "error: --beta must be >= 0"),
])
def test_user_errors_end_in_one_line_and_exit_code_1(capsys, error, expected):
    def action(_):
        raise error

    with pytest.raises(SystemExit) as exit_info:
        run_with(action)
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == expected


def test_os_errors_name_the_path(tmp_path, capsys):
    def action(args):
        open(args.path, "w")  # a directory: IsADirectoryError

    with pytest.raises(SystemExit) as exit_info:
        run_with(action, ["--path", str(tmp_path)])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == f"error: Is a directory: {tmp_path}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_permission_errors_name_the_path(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)

    def action(_):
        (locked / "out.json").write_text("{}")

    with pytest.raises(SystemExit):
        run_with(action)
    assert "Permission denied" in capsys.readouterr().err


def test_hugging_face_loading_errors_are_one_line(tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    def action(_):
        AutoModelForCausalLM.from_pretrained(str(tmp_path / "no_model_here"))

    with pytest.raises(SystemExit) as exit_info:
        run_with(action)
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_bugs_keep_their_traceback():
    def action(_):
        return {}["missing key"]  # a genuine bug, not user input

    with pytest.raises(KeyError):
        run_with(action)
    with pytest.raises(ValueError, match="not user input"):
        run_with(lambda _: (_ for _ in ()).throw(ValueError("not user input")))


def test_bad_options_exit_2_naming_the_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_with(lambda _: None, ["--count", "0"])
    assert exit_info.value.code == 2 and "--count must be >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run_with(lambda _: None, ["--count", "many"])
    assert exit_info.value.code == 2 and "--count" in capsys.readouterr().err


@dataclass
class Switches:
    quick: bool = arg(False, "a smoke test")
    progress_bar: bool = arg(True, "show a progress bar")
    no_labeler: bool = arg(False, "write unlabelled pairs")
    mode: str = arg("fast", "how to run", choices=("fast", "slow"))
    objective: str | None = arg(None, "the objective (default: none)", choices=("mean", "worst"))
    width: int = arg(16, "hidden size (default 16)")
    seed: int = arg(0, "the seed")

    def __post_init__(self):
        if self.mode not in ("fast", "slow"):
            raise ConfigError(f"--mode must be one of fast, slow, got {self.mode!r}")


def test_booleans_are_flag_and_no_flag():
    assert (parse_dataclass(Switches, "", []).quick, parse_dataclass(Switches, "", []).progress_bar) == (False, True)
    parsed = parse_dataclass(Switches, "", ["--quick", "--no-progress-bar", "--no-labeler"])
    assert (parsed.quick, parsed.progress_bar, parsed.no_labeler) == (True, False, True)
    assert parse_dataclass(Switches, "", ["--quick", "--no-quick"]).quick is False  # the last one wins


@pytest.mark.parametrize("argv", [["--quick", "true"], ["--progress-bar", "false"], ["--no-no-labeler"]])
def test_the_old_boolean_spellings_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_dataclass(Switches, "", argv)
    assert exit_info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_help_lists_choices_and_each_default_once(capsys):
    with pytest.raises(SystemExit):
        parse_dataclass(Switches, "", ["--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "--quick, --no-quick a smoke test (default: --no-quick)" in text
    assert "--progress-bar, --no-progress-bar show a progress bar (default: --progress-bar)" in text
    assert "--no-labeler write unlabelled pairs" in text and "--no-no-labeler" not in text
    assert "--mode {fast,slow} how to run (default: fast)" in text
    assert "--objective {mean,worst} the objective (default: none) --width" in text  # never "(default: None)"
    assert "hidden size (default 16) --seed" in text  # the help states it: not twice
    assert "the seed (default: 0)" in text
    assert text.count("(default") == 6  # one per option but --no-labeler


def test_choices_are_checked_by_the_dataclass_once_with_its_message(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_dataclass(Switches, "", ["--mode", "medium"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--mode must be one of fast, slow, got 'medium'" in err
    assert "invalid choice" not in err


def test_train_help_lists_the_registered_algorithms_and_fixed_choices(capsys):
    from rlhf_gym.agents import train
    from rlhf_gym.agents.registry import ALGORITHMS

    ALGORITHMS["toy"] = object  # registered after the command's module was imported: listed all the same
    try:
        with pytest.raises(SystemExit):
            parse_dataclass(train.Args, "", ["--help"])
    finally:
        del ALGORITHMS["toy"]
    text = capsys.readouterr().out
    assert "--algo {ppo,nlpo,rloo,grpo,dpo,ipo,cdpo,simpo,kto,online_dpo,toy}" in text
    for option in ("--amp {auto,bf16,fp16,none}", "--kl-estimator {k1,k3}", "--kl-placement {terminal,per_token}",
                   "--grpo-loss {dapo,grpo}", "--progress-bar, --no-progress-bar"):
        assert option in text, option
    assert "(default: None)" not in text and "(default: 0.5) (default" not in text


def test_numbers_never_print_as_negative_zero():
    assert [format_number(v) for v in (-0.0, -0.0004, 0.0, 0.0004, -0.0005, 1.23456, -2.5)] == [
        "0.000", "0.000", "0.000", "0.000", "-0.001", "1.235", "-2.500"]
    assert (format_number(-0.004, 2), format_number(float("nan")), format_number(-1e-9, 0)) == ("0.00", "nan", "0")


def test_every_command_module_has_args_main_and_a_docstring():
    for name, command in COMMANDS.items():
        module = importlib.import_module(command.module)
        assert callable(module.main) and module.Args.__dataclass_fields__ and module.__doc__, name
        assert command.group in GROUPS and command.summary == module.__doc__.strip().splitlines()[0], name
        assert len(command.summary) <= 120 and "issue" not in command.summary, name  # one short line for --help


def test_dispatcher_lists_commands_and_refuses_unknown_ones(capsys):
    main(["--help"])
    listing = capsys.readouterr().out
    for command in COMMANDS.values():  # one line each, under its group's heading
        assert f"  {command.name} " in listing and command.summary in listing
        assert listing.index(f"\n{command.group}:") < listing.index(f"  {command.name} ")
    assert "rlhf_gym." not in listing  # descriptions, not module paths
    main(["--version"])
    assert capsys.readouterr().out.strip() == f"rlhf-gym {rlhf_gym.__version__}"
    with pytest.raises(SystemExit) as exit_info:
        main(["trian"])
    assert exit_info.value.code == 2 and "unknown command 'trian'" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[str(Path(sys.executable).parent / "rlhf-gym")], [sys.executable, "-m", "rlhf_gym"]])
def test_installed_command_runs(command, tmp_path):
    result = subprocess.run([*command, "train", "--kl-coef", "-1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--kl-coef must be >= 0" in result.stderr
    # a command that succeeds exits 0: its return value (summarize returns its table) must not reach sys.exit
    fake_run(tmp_path / "RLHF-v0__x__0__1", 1.0)
    result = subprocess.run([*command, "summarize", "--runs", str(tmp_path / "RLHF-v0__x__*")], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("1 runs") and result.stderr == ""


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_launched_non_main_process_ends_after_its_command_without_the_teardown(rank, tmp_path):
    # accelerate launch sets WORLD_SIZE and RANK; a worker (rank > 0) must skip the interpreter's teardown, where gloo
    # was seen to abort a finished run, and the main process must return as usual
    fake_run(tmp_path / "RLHF-v0__x__0__1", 1.0)
    script = ("import atexit; atexit.register(print, 'teardown'); from rlhf_gym.cli import run_command; "
              f"run_command('summarize', ['--runs', {str(tmp_path / 'RLHF-v0__x__*')!r}]); print('returned')")
    env = {**os.environ, "WORLD_SIZE": "2", "RANK": rank}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("1 runs")  # the command's output was flushed before the exit
    ended_early = "returned" not in result.stdout and "teardown" not in result.stdout
    assert ended_early == (rank == "1")
