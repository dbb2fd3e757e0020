"""Runs dispatched by rlhf_gym.dispatch: the checks of the Ray options, the local pool, and Ray tasks on a local Ray
instance of 2 CPUs (the sweep and the leaderboard through Ray give the records of the local path, and resume)."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlhf_gym.studies import diverse_ensembles, iterated, rm_scaling, sweep
from rlhf_gym.studies import leaderboard
from rlhf_gym import registration
from rlhf_gym.checks import check_seed
from rlhf_gym.cli import parse_dataclass
from rlhf_gym.studies import best_of_n
from rlhf_gym.dispatch import Job, RaySettings, RunFailedError, connect, import_ray, run_all
from rlhf_gym.errors import ConfigError
from rlhf_gym.studies.analysis.run_store import run_path

COMMANDS = (sweep, leaderboard, best_of_n, iterated, rm_scaling, diverse_ensembles)
RECORD_KEYS = ("gold_reward", "normalised_score", "proxy_reward", "kl", "distinct_2", "well_formed", "samples")
"""What a leaderboard record measures (its time and run directory differ from run to run)."""


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.__name__.rsplit(".", 1)[-1])
@pytest.mark.parametrize("argv, message", [
    (["--ray", "--ray-num-cpus", "0"], "--ray-num-cpus must be a finite number > 0, got 0.0"),
    (["--ray-address", "auto", "--ray-num-gpus", "-1"], "--ray-num-gpus must be a finite number >= 0, got -1.0"),
    (["--ray-num-cpus", "2"], "--ray-num-cpus needs --ray or --ray-address"),
    (["--ray-num-gpus", "1"], "--ray-num-gpus needs --ray or --ray-address"),
    (["--ray-address", ""], "--ray-address must not be empty"),
    (["--ray-address", "127.0.0.1"], "--ray-address '127.0.0.1': expected auto, host:port or ray://host:port"),
    (["--ray-address", "ray://head:port"], "--ray-address 'ray://head:port': expected auto, host:port"),
    (["--ray-address", "http://head:10001"], "--ray-address 'http://head:10001': expected auto, host:port"),
])
def test_bad_ray_options(command, argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_dataclass(command.Args, "", argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", [sweep, best_of_n, iterated, rm_scaling, diverse_ensembles],
                         ids=["sweep", "best_of_n", "iterated", "rm_scaling", "diverse_ensembles"])
def test_a_gpu_is_refused_where_the_runs_use_the_cpu(command):
    with pytest.raises(ConfigError, match="--ray-num-gpus 1: this command's runs use the CPU only"):
        command.Args(ray=True, ray_num_gpus=1)


def test_ray_without_the_extra_is_a_config_error_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets when the extra is not installed
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "1")
    for command in COMMANDS:
        with pytest.raises(ConfigError, match=r'Ray is not installed \(pip install "rlhf-gym\[ray\]"\)'):
            command.Args(ray=True)
    with pytest.raises(ConfigError, match="pip install"):
        run_all([Job("sqrt(4)", math.sqrt, (4,))], ray=RaySettings())
    assert os.environ["RAY_USAGE_STATS_ENABLED"] == "0"  # Ray's usage statistics are off before it is imported


def test_runs_in_this_process_are_stored_as_they_finish_and_a_failure_names_its_run():
    stored = []
    jobs = [Job("seed=1", check_seed, (1,), stored.append), Job("seed=-1", check_seed, (-1,), stored.append),
            Job("sqrt(-1)", math.sqrt, (-1,), stored.append), Job("sqrt(4)", math.sqrt, (4,), stored.append)]
    # a user error stays one (the command line prints it as one line), naming the run and what else failed
    with pytest.raises(ConfigError, match=r"^--seed must be in \[0, 2\*\*32\), got -1 \(run seed=-1; 2 of 4 runs failed "
                                          r"\(seed=-1, sqrt\(-1\)\), 2 finished\)$") as error:
        run_all(jobs)
    assert stored == [None, 2.0] and isinstance(error.value.__cause__, ConfigError)
    with pytest.raises(RunFailedError, match=r"^ValueError: math domain error \(run sqrt\(-1\); 1 of 2 runs failed"):
        run_all(jobs[2:])
    with pytest.raises(ValueError, match="math domain error") as error:  # a lone run raises its own error
        run_all(jobs[2:3])
    assert type(error.value) is ValueError
    assert run_all([]) == []


@pytest.mark.slow
def test_the_local_pool_runs_one_torch_thread_per_process_and_names_a_failure():
    stored = []
    jobs = [Job("threads", torch.get_num_threads, (), stored.append), Job("sqrt(-1)", math.sqrt, (-1,)),
            Job("sqrt(9)", math.sqrt, (9,), stored.append)]
    with pytest.raises(RunFailedError, match=r"ValueError: math domain error \(run sqrt\(-1\); 1 of 3 runs failed"):
        run_all(jobs, workers=2)
    assert sorted(stored) == [1, 3.0]  # one torch thread in each worker, as the sweep's workers always had


@pytest.mark.slow
def test_the_pool_s_workers_exit_when_their_driver_is_killed(tmp_path):
    """A killed driver (SIGKILL: no cleanup runs) must not leave its workers training on: a rerun of the command would
    share the run store with them."""
    driver = subprocess.Popen([sys.executable, "-c", (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from helpers import record_pid_and_sleep\n"
        "from rlhf_gym.dispatch import Job, run_all\n"
        f"run_all([Job(str(i), record_pid_and_sleep, ({str(tmp_path)!r}, 120.0)) for i in range(2)], workers=2)\n")])
    deadline = time.time() + 120
    while len(list(tmp_path.iterdir())) < 2 and time.time() < deadline:  # both workers are in their jobs
        time.sleep(0.2)
    workers = [int(p.name) for p in tmp_path.iterdir()]
    assert len(workers) == 2
    driver.kill()
    driver.wait()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return not Path(f"/proc/{pid}/stat").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"

    deadline = time.time() + 30
    while any(alive(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers)  # gone within seconds, not after their 120 s jobs


def test_an_address_without_a_cluster_is_a_config_error(monkeypatch):
    """What ``ray.init`` raises when no cluster answers (at once for ``auto`` on a machine without Ray) becomes a
    one-line error naming the option."""
    ray = pytest.importorskip("ray")

    def no_cluster(address):
        raise ConnectionError("ray client connection timeout")

    monkeypatch.setattr(ray, "init", no_cluster)
    with pytest.raises(ConfigError, match=r"^--ray-address auto: cannot connect to a Ray cluster there "
                                          r"\(ray client connection timeout\)$"):
        connect(ray, "auto")


class NeverInit:
    """A stand-in for the ray module whose ``init`` must not be reached."""

    def init(self, **kwargs):
        raise AssertionError(f"ray.init was called with {kwargs}")


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_an_address_where_nothing_listens_is_one_error_at_once(address):
    """rlhf-gym 0.8 handed ``127.0.0.1:1`` to ``ray.init``, which waited past 200 s with no message; the port is now
    probed first, with a timeout, and a refusal is one line naming the option."""
    started = time.time()
    with pytest.raises(ConfigError, match=rf"^--ray-address {address}: nothing answers at 127.0.0.1:1 \("):
        connect(NeverInit(), address)
    assert time.time() - started < 10


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance of 2 CPUs for the module (started in a few seconds), shut down after it."""
    pytest.importorskip("ray")
    ray = import_ray()
    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def one_thread():
    """The local reference runs on one torch thread, like a Ray task of 1 CPU (float sums depend on the threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_ray_tasks_reserve_their_cpus_run_their_threads_and_name_a_failure(ray_instance):
    assert run_all([Job("threads", torch.get_num_threads)], ray=RaySettings(num_cpus=2)) == [2]
    stored = []
    jobs = [Job("threads", torch.get_num_threads, (), stored.append), Job("seed=-1", check_seed, (-1,)),
            Job("sqrt(-1)", math.sqrt, (-1,)), Job("sqrt(9)", math.sqrt, (9,), stored.append)]
    with pytest.raises(ConfigError, match=r"got -1 \(run seed=-1; 2 of 4 runs failed \(seed=-1, sqrt\(-1\)\), 2 finished\)"):
        run_all(jobs, ray=RaySettings())  # the first failure in the order of the jobs, whichever finished first
    assert sorted(stored) == [1, 3.0]
    for settings, message in ((RaySettings(num_cpus=3), "--ray-num-cpus 3: the local Ray instance has 2 CPUs"),
                              (RaySettings(num_gpus=1), "--ray-num-gpus 1: the local Ray instance has 0 GPUs")):
        with pytest.raises(ConfigError, match=message):
            run_all(jobs, ray=settings)


@pytest.mark.slow
def test_a_sweep_on_ray_stores_the_records_of_the_local_sweep_and_resumes(ray_instance, tmp_path):
    local = parse_dataclass(sweep.Args, "", ["--quick", "--out-dir", str(tmp_path / "local")])
    on_ray = parse_dataclass(sweep.Args, "", ["--quick", "--ray", "--out-dir", str(tmp_path / "ray")])
    expected = sweep.main(local)
    result = sweep.main(on_ray)
    for beta in (0.0, 0.1):
        runs = [json.loads(run_path(args.out_dir, beta, 0).read_text()) for args in (local, on_ray)]
        assert {**runs[0], "seconds": 0} == {**runs[1], "seconds": 0}
    assert result["summary"] == expected["summary"] and result["best_of_n"] == expected["best_of_n"]
    assert (tmp_path / "ray" / "sweep.md").read_text() == (tmp_path / "local" / "sweep.md").read_text()
    assert (tmp_path / "ray" / "sweep.png").stat().st_size > 0

    stamps = [p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("**/*.json") if p.name != "sweep.json"]
    assert sweep.main(on_ray)["summary"] == expected["summary"]  # everything is stored: nothing runs again
    assert [p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("**/*.json") if p.name != "sweep.json"] == stamps


@pytest.mark.slow
def test_a_failing_ray_task_names_its_run_and_the_finished_runs_are_kept(ray_instance, tmp_path):
    args = parse_dataclass(sweep.Args, "", ["--quick", "--ray", "--out-dir", str(tmp_path)])
    args.best_of_n_max = 0  # (--quick sets 4) the two runs alone
    (tmp_path / "work" / "beta0.1_seed0" / "curve.jsonl").mkdir(parents=True)  # the run cannot write its curve there
    # an OSError naming a file keeps its class (the command line prints it as one line), with the run named
    with pytest.raises(IsADirectoryError, match=r"Is a directory \(run beta=0\.1 seed=0; 1 of 2 runs failed "
                                                r"\(beta=0\.1 seed=0\), 1 finished\)") as error:
        sweep.main(args)
    assert error.value.filename.endswith("curve.jsonl")
    assert "in train_one" in str(error.value.__cause__)  # the worker's traceback comes along
    assert run_path(tmp_path, 0.0, 0).exists() and not run_path(tmp_path, 0.1, 0).exists()


@pytest.mark.slow
def test_a_suite_leaderboard_on_ray_stores_the_records_of_the_local_one_and_resumes(ray_instance, tmp_path, monkeypatch,
                                                                                   one_thread):
    monkeypatch.setitem(registration.SUITES, "Tiny", ("RLHF-v0", "RLHF-Lists-v0"))
    settings = {"quick": True, "seeds": "0", "suite": "Tiny", "methods": "sft,ppo"}
    expected = leaderboard.main(leaderboard.Args(out_dir=str(tmp_path / "local"), **settings))
    rows = leaderboard.main(leaderboard.Args(out_dir=str(tmp_path / "ray"), ray=True, **settings))
    for env_id in ("RLHF-v0", "RLHF-Lists-v0"):
        for method in ("sft", "ppo"):
            records = [json.loads(leaderboard.record_path(tmp_path / where / env_id, method, 0).read_text())
                       for where in ("local", "ray")]
            assert {k: records[0][k] for k in RECORD_KEYS} == {k: records[1][k] for k in RECORD_KEYS}
    drop_seconds = [{k: v for k, v in row.items() if k != "seconds"} for row in rows]
    assert drop_seconds == [{k: v for k, v in row.items() if k != "seconds"} for row in expected]
    assert (tmp_path / "ray" / "RLHF-Lists-v0" / "leaderboard.png").stat().st_size > 0

    stored = list((tmp_path / "ray").glob("*/records/*.json"))
    stamps = [p.stat().st_mtime_ns for p in stored]
    leaderboard.main(leaderboard.Args(out_dir=str(tmp_path / "ray"), ray=True, **settings))  # nothing runs again
    assert [p.stat().st_mtime_ns for p in stored] == stamps and len(stored) == 4
