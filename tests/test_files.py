"""rlhf_gym.files: a library's write error becomes an OSError that names the file the user asked for."""

import errno

import pytest

from rlhf_gym.cli import user_error_message
from rlhf_gym.files import write_errors_name


class SafetensorError(Exception):
    """Stands in for safetensors' class, which the helper matches by name."""


@pytest.mark.parametrize("raised, number", [
    (SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"), errno.ENOSPC),
    (SafetensorError("Error while serializing: I/O error: Disk quota exceeded (os error 122)"), errno.EDQUOT),
    (SafetensorError("Error while serializing: something else"), errno.EIO),
    (OSError(errno.ENOSPC, "No space left on device"), errno.ENOSPC),  # an OSError that names no file
])
def test_a_write_error_names_the_path(tmp_path, raised, number):
    with pytest.raises(OSError) as error, write_errors_name(tmp_path / "model"):
        raise raised
    assert error.value.errno == number and error.value.filename == str(tmp_path / "model")
    assert user_error_message(error.value).endswith(f": {tmp_path / 'model'}")
    assert error.value.__cause__ is raised


def test_other_errors_and_named_os_errors_pass_through(tmp_path):
    named = OSError(errno.EACCES, "Permission denied", "/elsewhere/file")
    with pytest.raises(OSError) as error, write_errors_name(tmp_path):
        raise named
    assert error.value is named
    with pytest.raises(ValueError, match="a bug"), write_errors_name(tmp_path):
        raise ValueError("a bug")


def test_a_failed_job_s_os_error_keeps_its_file_and_names_the_run():
    """``rlhf-gym iterate`` with several runs: a full disk in one is one line naming the run and the file."""
    from rlhf_gym.dispatch import Job, _failure

    jobs = [Job("rounds=1 seed=0", print, ()), Job("rounds=2 seed=0", print, ())]
    error = _failure(jobs, [(1, OSError(errno.ENOSPC, "No space left on device", "/runs/r2/reward_model"))])
    assert user_error_message(error) == ("No space left on device (run rounds=2 seed=0; 1 of 2 runs failed "
                                         "(rounds=2 seed=0), 1 finished): /runs/r2/reward_model")


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path):
    # tempfile makes its files 0600 and directories 0700: an export meant to be shared would be unreadable to others
    import os

    from rlhf_gym.files import PROCESS_UMASK, atomic_write_text, umask_mode

    atomic_write_text(tmp_path / "a.txt", "x")
    with open(tmp_path / "b.txt", "w") as handle:  # a plain write, for comparison
        handle.write("x")
    assert os.stat(tmp_path / "a.txt").st_mode & 0o777 == os.stat(tmp_path / "b.txt").st_mode & 0o777 == umask_mode()
    assert umask_mode(0o777) == 0o777 & ~PROCESS_UMASK
