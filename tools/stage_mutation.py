"""Stage a copy of the repository in which mutmut 3 can mutate ``agents/``, ``envs/``, ``benchmarks/`` and ``studies/``.

pyproject.toml installs those folders as ``rlhf_gym.agents`` (...) through setuptools' package-dir. mutmut 3 names a
mutant after its file's path but its trampoline compares that name with the function's ``__module__``, so it cannot
mutate them in place (CONTRIBUTING.md, "Mutation testing"). The stage is a copy of the files git knows (tracked, and
untracked ones that are not ignored) with those folders moved to real subfolders ``rlhf_gym/agents/`` (...), and a
``[tool.mutmut]`` section for the newer modules in its pyproject.toml. Then::

    python tools/stage_mutation.py /tmp/rlhf_gym_mutation
    cd /tmp/rlhf_gym_mutation && xargs -d '\\n' -a mutation_selection.txt mutmut run --max-children 1

Restaging keeps the stage's ``mutants/`` (mutmut's results, ``mutmut results``) and the files' times. mutmut reruns
every mutant a run names (the patterns above name them all); to rerun a few after adding tests, name those alone.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STAGE = Path("/tmp/rlhf_gym_mutation")
MAPPED = ("agents", "envs", "benchmarks", "studies")
"""The folders pyproject.toml's package-dir maps into ``rlhf_gym``; staged as ``rlhf_gym/<folder>``."""
KEPT = ("mutants",)
"""What a restage leaves in place in the stage: mutmut's copy and its results."""

ONLY_MUTATE = [
    "rlhf_gym/agents/dpo.py", "rlhf_gym/agents/offline.py", "rlhf_gym/agents/rloo.py", "rlhf_gym/agents/grpo.py",
    "rlhf_gym/agents/critic_free.py", "rlhf_gym/agents/parallel.py", "rlhf_gym/agents/lora.py",
    "rlhf_gym/tasks/lists/gold.py", "rlhf_gym/tasks/facts/gold.py", "rlhf_gym/tasks/describe/gold.py",
    "rlhf_gym/labelers.py", "rlhf_gym/studies/analysis/gao.py", "rlhf_gym/tasks/base.py", "rlhf_gym/studies/leaderboard.py",
]
TESTS = [
    "tests/test_pinned_maths_algorithms.py", "tests/test_pinned_maths_tasks.py", "tests/test_dpo.py",
    "tests/test_critic_free.py", "tests/test_data_parallel.py", "tests/test_annotators.py", "tests/test_task_lists.py",
    "tests/test_task_facts.py", "tests/test_task_describe.py", "tests/test_leaderboard.py",
    "tests/test_task_suite.py::test_normalised_score_is_zero_at_the_sft_figure_and_one_at_the_ceiling",
    *(f"tests/test_lora.py::{name}" for name in (
        "test_only_the_adapters_and_the_value_head_train_on_every_linear_layer_and_the_head_by_default",
        "test_the_env_scores_with_the_same_base_weights_with_the_adapters_off",
        "test_nlpo_refuses_a_lora_head_tied_to_the_embeddings",
        "test_a_reference_masking_model_is_replaced_by_the_shared_reference",
        "test_target_modules_choose_the_adapted_layers", "test_bad_settings_are_refused",
        "test_an_unknown_target_module_is_named_with_the_model_layers", "test_lora_without_peft_says_how_to_install_it",
        "test_a_shared_reference_must_have_the_env_vocabulary", "test_the_adapter_update_is_scaled_by_alpha_over_r")),
    *(f"tests/test_rm_scaling.py::{name}" for name in (
        "test_best_of_n_form_is_fitted_exactly_and_peaks_at_alpha_over_2b", "test_best_of_n_gain_is_measured_from_best_of_one",
        "test_rl_form_by_hand_and_its_exact_fit", "test_rl_gold_gain_is_measured_from_each_run_first_point",
        "test_best_of_n_gain_starts_from_a_non_zero_best_of_one")),
]
"""The fast tests that pin these modules, without those marked slow (node ids where a file's other tests train models
for seconds each: a surviving mutant runs every test that reaches its function)."""


SELECTION = {
    "agents.dpo": ["dpo_loss", "DPO.pair_losses", "DPO._configure_loss", "DPO.loss_kwargs", "IPO.loss_kwargs"],
    "agents.offline": ["tokenize_response", "sequence_logps", "OfflinePreferenceOptimizer._batch",
                       "OfflinePreferenceOptimizer._next_indices", "OfflinePreferenceOptimizer.train_step"],
    "agents.rloo": ["*"],
    "agents.grpo": ["grpo_advantages", "k3_kl", "GRPO.sequence_rewards", "GRPO.group_advantages", "GRPO.policy_loss"],
    "agents.critic_free": ["group_view", "CriticFreeTokenPG._compute_advantages"],
    "tasks.lists.gold": ["*"], "tasks.facts.gold": ["*"], "tasks.describe.gold": ["*"], "studies.analysis.gao": ["*"],
    "tasks.base": ["Task.normalised_score", "Task.gold_scores"], "studies.leaderboard": ["aggregate", "suite_table"],
    "agents.parallel": ["DataParallel.process_seed", "DataParallel.share", "DataParallel.sum", "DataParallel.gather",
                        "DataParallel.own_part", "DataParallel.mean", "ProcessGroupKLController.update",
                        "ProcessGroupKLController.synchronise"],
    "agents.lora": ["target_modules", "builds_on_reference", "adapts_tied_head", "lora_base"],
    "labelers": ["SimulatedAnnotator.seed_pair", "SimulatedAnnotator.utility", "SimulatedAnnotator.preference_probability",
                 "SimulatedAnnotator.__call__", "AnnotatorPool.seed_pair", "AnnotatorPool.preference_probability",
                 "AnnotatorPool.__call__"],
}
"""The functions that hold the maths, by module of ``rlhf_gym`` (``*``: all of the module's); not the plumbing
(constructors, saving, logging, the learn loops), which the slower tests cover."""
SELECTION_FILE = "mutation_selection.txt"
"""Written into the stage: mutmut's name patterns of :data:`SELECTION`, one a line (for ``xargs``)."""


def mutant_patterns() -> list[str]:
    """mutmut's name patterns: ``rlhf_gym.agents.dpo.x_dpo_loss__*``, ``rlhf_gym.agents.dpo.xǁDPOǁpair_losses__*``."""
    patterns = []
    for module, functions in SELECTION.items():
        for function in functions:
            cls, _, name = function.rpartition(".")
            mangled = "*" if function == "*" else f"xǁ{cls}ǁ{name}__*" if cls else f"x_{name}__*"
            patterns.append(f"rlhf_gym.{module}.{mangled}")
    return patterns


def staged_path(path: str) -> str:
    """``agents/dpo.py`` -> ``rlhf_gym/agents/dpo.py``; any other path unchanged."""
    top, _, rest = path.partition("/")
    return f"rlhf_gym/{path}" if top in MAPPED and rest else path


def project_files(root: Path = ROOT) -> list[str]:
    """The files git knows in ``root``: tracked, and untracked ones that are not ignored (new tests, say)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                         check=True, capture_output=True, text=True).stdout
    return sorted(name for name in out.split("\0") if name and (root / name).is_file())


def toml_list(values: list[str]) -> str:
    return "[\n" + "".join(f'    "{value}",\n' for value in values) + "]"


def mutmut_section() -> str:
    """The stage's ``[tool.mutmut]`` section (everything under ``rlhf_gym/`` is copied, artifacts included)."""
    return ("[tool.mutmut]\n# written by tools/stage_mutation.py: the newer modules, on a staged copy (see its docstring)\n"
            f'source_paths = ["rlhf_gym/"]\nonly_mutate = {toml_list(ONLY_MUTATE)}\nalso_copy = ["configs/"]\n'
            f"pytest_add_cli_args_test_selection = {toml_list(TESTS)}\n"
            'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-n", "0", "-m", "not slow"]\n'
            'process_isolation = "forkserver"\n'
            "# a CPU-time limit: 5 times the tests' own time (not 15) catches an infinite loop sooner\n"
            "timeout_multiplier = 5.0\n")


def staged_pyproject(text: str) -> str:
    """``text`` with its ``[tool.mutmut]`` section (up to the next table or the end) replaced by the stage's."""
    start = text.index("[tool.mutmut]")
    end = text.find("\n[", start + 1)
    return text[:start] + mutmut_section() + ("" if end < 0 else text[end:])


def stage(destination: Path, root: Path = ROOT) -> list[str]:
    """Copy the project into ``destination`` as described in the module docstring; return the staged paths."""
    destination.mkdir(parents=True, exist_ok=True)
    for entry in destination.iterdir():  # start over, but keep mutmut's results
        if entry.name not in KEPT:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    staged = []
    for name in project_files(root):
        target = destination / staged_path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)  # with its time: mutmut tells unchanged files by it
        staged.append(staged_path(name))
    pyproject = destination / "pyproject.toml"
    pyproject.write_text(staged_pyproject(pyproject.read_text()))
    (destination / SELECTION_FILE).write_text("".join(f"{pattern}\n" for pattern in mutant_patterns()))
    return staged


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("destination", nargs="?", type=Path, default=DEFAULT_STAGE,
                        help=f"the stage directory (default {DEFAULT_STAGE}); its mutants/ is kept")
    args = parser.parse_args(argv)
    staged = stage(args.destination.resolve())
    print(f"staged {len(staged)} files in {args.destination}; now:\n  cd {args.destination} && "
          f"xargs -d '\\n' -a {SELECTION_FILE} mutmut run --max-children 1")


if __name__ == "__main__":
    main()
