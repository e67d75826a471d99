"""Where and how the model runs: the device (`auto` = CUDA when present), bf16 or fp32, and how many CPU
threads a process computes with."""

import hashlib
import os
from contextlib import nullcontext
from pathlib import Path

import torch

from charrnn import project_root, sampling_rules
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
    if precision == "bf16":
        require_bf16_kernels(device_type, "precision: auto or fp32")
    return precision


def require_bf16_kernels(device_type, alternatives):
    """Raise no_bf16_error() unless the device has bf16 kernels."""
    if not has_bf16_kernels(device_type):
        raise no_bf16_error(device_type, alternatives)


def no_bf16_error(device_type, alternatives):
    """The one error for bf16 asked of a device without bf16 kernels, naming the `alternatives`."""
    which = "GPU" if device_type == "cuda" else "CPU"
    capability = "" if device_type == "cuda" else f" (CPU capability {torch.backends.cpu.get_cpu_capability()})"
    return CharRNNError(f"precision is bf16, but this {which} has no bf16 kernels{capability}: use {alternatives}")


def generation_precision(precision, device, cell="lstm"):
    """sampling_rules.generation_precision on this device: its bf16 kernels, its error without them."""
    device_type = torch.device(device).type
    return sampling_rules.generation_precision(precision, cell, device_type, has_bf16_kernels(device_type),
                                               lambda alternatives: no_bf16_error(device_type, alternatives))


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
    count = auto_threads() if setting == "auto" else setting
    torch.set_num_threads(count)
    return count


def auto_threads():
    """OMP_NUM_THREADS where it is set (torchrun sets 1 per process), else the CPUs this process may use
    shared equally among the jobs of this project's DVC queue: `dvc queue start -j 2` on 2 cores runs
    its two experiments with one thread each, and a `dvc repro` beside them counts as one more job."""
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return int(omp)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    root = project_root()
    in_queue = Path.cwd().resolve().is_relative_to(root / ".dvc" / "tmp" / "exps")  # DVC's temp copy of a queued run
    jobs = queue_workers(root) + (0 if in_queue else 1)
    return max(1, cpus // max(1, jobs))


def queue_workers(root):
    """The DVC queue workers running for the project in `root` (`dvc queue start -j N` starts N; each
    runs one experiment at a time). DVC names them dvc-exp-<hash of the queue's folder>-<n>; read from
    /proc, so 0 where there is none (not Linux)."""
    folder = os.path.join(root, ".dvc", "tmp", "exps", "celery")  # as DVC's celery queue names its workers
    prefix = f"dvc-exp-{hashlib.sha256(folder.encode()).hexdigest()[:6]}-".encode()
    count = 0
    for pid in os.listdir("/proc") if os.path.isdir("/proc") else ():
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone
            continue
        if b"queue-worker" in args and any(arg.startswith(prefix) for arg in args):
            count += 1
    return count
