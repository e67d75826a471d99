"""Where and how the model runs: the device (`auto` = CUDA when present), bf16 or fp32, and how many CPU
threads a process computes with."""

import os
import sys
from contextlib import nullcontext

import torch

from charrnn import dvc_exp, project_root
from charrnn.errors import CharRNNError


def pick_device(name):
    """'auto' is CUDA when a GPU is present, else the CPU; 'cuda' without a GPU is an error."""
    cuda = torch.cuda.is_available()
    if name == "auto":
        return "cuda" if cuda else "cpu"
    if name == "cuda" and not cuda:
        raise CharRNNError("device is 'cuda' but no CUDA GPU is available here (use device: auto or cpu)")
    return name


def resolve_precision(device, precision):
    """'auto' is bf16 where the device has bf16 kernels, else fp32; bf16 where it has none is an error."""
    device_type = torch.device(device).type
    if precision == "auto":
        return "bf16" if has_bf16_kernels(device_type) else "fp32"
    if precision == "bf16" and missing_bf16_kernels(device_type) is not None:
        raise CharRNNError(f"precision is bf16, but {missing_bf16_kernels(device_type)}: use precision: auto or fp32")
    return precision


def missing_bf16_kernels(device_type):
    """Why the device cannot run bf16, in words (e.g. 'this CPU has no bf16 kernels (CPU capability AVX2)'),
    or None where it has bf16 kernels."""
    if has_bf16_kernels(device_type):
        return None
    if device_type == "cuda":
        return "this GPU has no bf16 kernels"
    return f"this CPU has no bf16 kernels (CPU capability {torch.backends.cpu.get_cpu_capability()})"


def precision_context(device, precision):
    """bf16 autocast on the device's type (the loss and optimizer stay fp32), or nothing for fp32."""
    if resolve_precision(device, precision) != "bf16":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def has_bf16_kernels(device_type):
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    # oneDNN's bf16 RNN kernels need AVX512 (AVX512-BF16 or AMX to be fast); on AVX2 CPUs they fail
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def use_threads(setting):
    """Compute with `setting` CPU threads (the `threads` param, `--threads`): an integer as given, or
    'auto' (auto_threads()). Returns the number. torch otherwise starts one thread per core in every
    process, and two processes computing at once on the same cores make each several times slower."""
    count, cpus = auto_threads() if setting == "auto" else setting, usable_cpus()
    if count > cpus:  # more threads than CPUs: each waits for the others, many times slower
        asked = f"OMP_NUM_THREADS={count}" if setting == "auto" else f"threads {count}"
        print(
            f"warning: {asked} is more than the {cpus} CPUs this process may use: computing with {cpus}",
            file=sys.stderr,
            flush=True,
        )
        count = cpus
    torch.set_num_threads(count)
    return count


def auto_threads():
    """OMP_NUM_THREADS where it is set (torchrun sets 1 per process), else the CPUs this process may use
    shared equally among the jobs of this project's DVC queue: `dvc queue start -j 2` on 2 cores runs
    its two experiments with one thread each, and a `dvc repro` beside them counts as one more job."""
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    return max(1, usable_cpus() // dvc_exp.project_jobs(project_root()))


def available_memory(device):
    """Bytes `device` can still give: the GPU's free memory, else the system's MemAvailable (None where
    /proc/meminfo is not)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.mem_get_info(torch.device(device))[0]
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def usable_cpus():
    """The CPUs this process may run on (its affinity, as taskset or a container's cpuset sets it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
