"""What the benchmarks share: the machine they ran on, the corpora as id arrays, a timer.

Run a benchmark from the repository root, e.g. `CHARRNN_DATA_MIRROR=../shared/data python bench/train_speed.py`;
the corpora are fetched (mirror, else download) and encoded once into bench/.data/.
"""

import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # `import peer` from any working directory

from charrnn import corpus  # noqa: E402
from charrnn.batches import load_ids  # noqa: E402
from charrnn.device import has_bf16_kernels  # noqa: E402
from charrnn.vocab import Vocab, encode_file  # noqa: E402

DATA_DIR = Path(__file__).parent / ".data"
PARAMS_FILE = Path(__file__).parent.parent / "params.yaml"  # the project's defaults


def machine():
    """One line naming what the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    line = (f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} using {torch.get_num_threads()} threads, "
            f"{torch.backends.cpu.get_cpu_capability()}, CPU bf16 kernels: {'yes' if has_bf16_kernels('cpu') else 'no'}")
    if torch.cuda.is_available():
        line += f"; GPU: {torch.cuda.get_device_name()}, {gpu_limits()}"
        torch.cuda.empty_cache()  # give back the measurement's buffers
    return line


def gpu_limits():
    """The GPU's own ceilings, measured: an 8192^3 matrix product in bf16 and in fp32 (TF32 off), and a
    1 GiB device-to-device copy (bytes read + written); the median of 10 after 3 warm-ups."""
    def median_seconds(fn):
        for _ in range(3):
            fn()
        times = []
        for _ in range(10):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return sorted(times)[len(times) // 2]

    n, rates = 8192, {}
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for dtype in (torch.bfloat16, torch.float32):
            a, b = (torch.randn(n, n, device="cuda", dtype=dtype) for _ in range(2))
            rates[dtype] = 2 * n**3 / median_seconds(lambda: a @ b) / 1e12
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    source = torch.randn(2**28, device="cuda")
    target = torch.empty_like(source)
    bandwidth = 2 * source.nbytes / median_seconds(lambda: target.copy_(source)) / 1e9
    return (f"matmul {rates[torch.bfloat16]:.0f} TFLOP/s bf16, {rates[torch.float32]:.0f} fp32, "
            f"copy {bandwidth:,.0f} GB/s")


def corpus_ids(name):
    """(vocab, memory-mapped ids) of a known corpus, fetched and encoded into bench/.data/ once."""
    source = corpus.resolve(name)
    raw, sha256 = corpus.fetch(source, DATA_DIR)
    ids_path, vocab_path = DATA_DIR / f"{name}.npy", DATA_DIR / f"{name}.vocab.json"
    if not vocab_path.exists() or Vocab.load(vocab_path).sha256 != sha256:
        vocab, _ = encode_file(raw, ids_path, name, sha256, start=source.start, end=source.end)
        vocab.save(vocab_path)
    return Vocab.load(vocab_path), load_ids(ids_path)


def timed(steps, warmup=2, sync=lambda: None):
    """Seconds per item of an iterator, after `warmup` untimed items (kernel set-up, caches). `sync`
    waits for queued device work: called before the clock starts and before it stops, not per item."""
    steps = iter(steps)
    for _ in range(warmup):
        next(steps)
    sync()
    start, count = time.perf_counter(), 0
    for _ in steps:
        count += 1
    sync()
    return (time.perf_counter() - start) / max(count, 1)


def device_sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
