"""Where a figure was made: the CPU, torch's threads and the versions recorded beside builds, runs and records."""

import torch

from rlhf_gym import provenance

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu vme

processor\t: 1
model name\t: AMD EPYC 9R14 96-Core Processor
"""


def test_the_cpu_name_is_the_first_model_name_of_cpuinfo_else_the_platforms():
    assert provenance.cpu_name(CPUINFO) == "AMD EPYC 9R14 96-Core Processor"
    fallback = provenance.cpu_name("processor\t: 0\nmodel name\t:\n")  # no name (some ARM kernels): the platform's word
    assert fallback and fallback == (provenance.platform.processor() or provenance.platform.machine() or "unknown")


def test_machine_reports_this_process_thread_count():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = provenance.machine()
        torch.set_num_threads(2)
        two = provenance.machine()
    finally:
        torch.set_num_threads(threads)
    assert (one["torch_threads"], two["torch_threads"]) == (1, 2)
    assert one["cpu"] == provenance.cpu_name() and one["logical_cpus"] >= 1 and one["gpu"] is None  # tests run on CPU
    assert provenance.versions()["torch"] == torch.__version__


def test_machines_summary_counts_each_machine_and_flags_a_mix():
    epyc = {"cpu": "AMD EPYC", "logical_cpus": 2, "torch_threads": 1, "gpu": None}
    xeon_two = {"cpu": "Intel Xeon", "logical_cpus": 8, "torch_threads": 2, "gpu": "NVIDIA H100"}
    assert provenance.machines_summary([{"machine": epyc}] * 3) == "made on AMD EPYC, 1 torch thread (3 records)"
    mixed = provenance.machines_summary([{"machine": epyc}, {"machine": xeon_two}, {}])
    assert mixed.startswith("made on AMD EPYC, 1 torch thread (1 record); Intel Xeon, 2 torch threads, GPU NVIDIA H100 "
                            "(1 record); a machine not recorded (1 record) — several machines"), mixed
