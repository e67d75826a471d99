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
        line += f"; GPU: {torch.cuda.get_device_name()}"
    return line


def corpus_ids(name):
    """(vocab, memory-mapped ids) of a known corpus, fetched and encoded into bench/.data/ once."""
    source = corpus.resolve(name)
    raw, sha256 = corpus.fetch(source, DATA_DIR)
    ids_path, vocab_path = DATA_DIR / f"{name}.npy", DATA_DIR / f"{name}.vocab.json"
    if not vocab_path.exists() or Vocab.load(vocab_path).sha256 != sha256:
        vocab, _ = encode_file(raw, ids_path, name, sha256, start=source.start, end=source.end)
        vocab.save(vocab_path)
    return Vocab.load(vocab_path), load_ids(ids_path)


def timed(steps, warmup=2):
    """Seconds per item of an iterator, after `warmup` untimed items (kernel set-up, caches)."""
    steps = iter(steps)
    for _ in range(warmup):
        next(steps)
    start, count = time.perf_counter(), 0
    for _ in steps:
        count += 1
    return (time.perf_counter() - start) / max(count, 1)


def device_sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
