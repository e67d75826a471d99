"""What the benchmarks share: the machine they ran on, the corpora as id arrays, a timer.

Run a benchmark from the repository root, e.g. `CHARRNN_DATA_MIRROR=../shared/data python bench/train_speed.py`;
the corpora are fetched (mirror, else download) and encoded once into bench/.data/.
"""

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))  # `import peer` from any working directory
sys.path.insert(1, str(Path(__file__).parent.parent / "tests"))  # the tests' helpers: an interrupted training

from charrnn.core.device import has_bf16_kernels  # noqa: E402
from charrnn.core.model import CharRNN  # noqa: E402
from charrnn.data import corpus  # noqa: E402
from charrnn.data.batches import load_ids  # noqa: E402
from charrnn.data.prepare import encode_file  # noqa: E402
from charrnn.data.vocab import Vocab  # noqa: E402
from charrnn.memory import keep_freed_memory  # noqa: E402

keep_freed_memory()  # the benches measure training and generation as the stages run them (charrnn/memory.py)

DATA_DIR = Path(__file__).parent / ".data"
PARAMS_FILE = Path(__file__).parent.parent / "params.yaml"  # the project's defaults


def model_of(vocab_size, config):
    """The CharRNN a bench's settings (a dict with params.yaml's names) describe."""
    return CharRNN(
        vocab_size, **{key: config[key] for key in ("cell", "lstm_size", "num_layers", "dropout", "embedding_size")}
    )


def at_least(kind, low, strict=False):
    """An argparse type: a finite `kind` (int or float) >= low (> low if strict), else argparse's usage error."""
    rule = f"a{'n integer' if kind is int else ' number'} {'>' if strict else '>='} {low}"

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {rule} (got {text!r})")
        return value

    return parse


def machine():
    """One line naming what the figures were measured on (the limits are measured apart: `limits()`)."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    line = (
        f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} using {torch.get_num_threads()} threads, "
        f"{torch.backends.cpu.get_cpu_capability()}, CPU bf16 kernels: {'yes' if has_bf16_kernels('cpu') else 'no'}"
    )
    if torch.cuda.is_available():
        line += f"; GPU: {torch.cuda.get_device_name()}"
    return line


# What a character costs a model: the arithmetic the percentages of the limits rest on.

GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # weight matrices per layer, stacked as gates x hidden rows


@dataclass
class ModelCost:
    """What one character costs a CharRNN, counted from its config (`model_cost`).

    flop_forward: floating-point operations of the forward pass, per character.
    flop_train: forward + backward, per character of a training batch.
    weights: numbers one stream reads per character when it writes alone (every matrix and bias once).
    gemm_width: (k, n) of the recurrent layers' matrix products: hidden in, gates x hidden out.
    """

    flop_forward: int
    flop_train: int
    weights: int
    gemm_width: tuple

    def weight_bytes(self, precision):
        return self.weights * BYTES[precision]

    def train_shapes(self, batch_size, num_steps):
        """The (m, k, n) of a training step's two kinds of matrix product in a layer above the first:
        all the window's inputs through the input weights at once, then one time step through the
        recurrent weights (num_steps of them one after another)."""
        k, n = self.gemm_width
        return {
            f"{batch_size * num_steps}x{k}x{n}": (batch_size * num_steps, k, n),
            f"{batch_size}x{k}x{n}": (batch_size, k, n),
        }


def model_cost(vocab_size, config):
    """The ModelCost of the CharRNN that `config` (params' keys: cell, lstm_size, num_layers,
    embedding_size) describes over `vocab_size` characters.

    A matrix product y = W x with W of r x c costs 2 r c FLOP per character (a multiply and an add per
    weight). A layer of G gates (LSTM 4, GRU 3, RNN 1) and H units has W_ih of (G H) x in, in = the
    one-hot vocabulary V (or the embedding width E) for the first layer and H above it, and W_hh of
    (G H) x H: 2 G H (in + H) FLOP. The head is H x V: 2 H V. The biases and the gates' elementwise
    nonlinearities (some tens of FLOP per unit, <1 % here) are left out. A one-hot input is
    counted as a full product with W_ih, as both charrnn and the peer compute it.

    Training costs 3x the forward pass: the backward pass computes a gradient for the inputs of every
    product and one for its weights, each a product of the forward one's size. (The first layer's
    input gradient is not needed; counting it overstates a one-hot 2x512 model's cost by ~2 %.)

    One stream writing alone reads every weight once per character: the matrices and biases (an
    embedding only its row: E numbers). E.g. a 2x512 LSTM over 83 characters: 6.72 MFLOP forward,
    20.1 MFLOP to train, 3.37 M weights = 13.5 MB in fp32.
    """
    gates, size, layers = GATES[config["cell"]], config["lstm_size"], config["num_layers"]
    embedding = config.get("embedding_size") or 0
    flop, weights = 0, embedding  # an embedding lookup costs no arithmetic
    for layer in range(layers):
        inputs = (embedding or vocab_size) if layer == 0 else size
        flop += 2 * gates * size * (inputs + size)
        weights += gates * size * (inputs + size) + 2 * gates * size  # W_ih, W_hh, b_ih, b_hh
    flop += 2 * size * vocab_size
    weights += size * vocab_size + vocab_size
    return ModelCost(flop, 3 * flop, weights, (size, gates * size))


# The machine's own limits, measured in the same run as the figures they bound.

BYTES = {"fp32": 4, "bf16": 2, "int8": 1}  # per weight
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Limits:
    """The ceilings a device reached in plain kernels: matrix products (GFLOP/s per precision and
    shape), an fp32 one-row matrix product over the model's weights (GB/s of weights read: the
    fastest plain read of them), a copy from memory (GB/s read + written), and the time of one small
    operation (an add of two 2048-number rows): what each of the many small steps of one generating
    stream costs however little it computes. `where` says where weights of each size live."""

    gemm: dict  # {precision: {shape name: GFLOP/s}}
    matvec: tuple  # (bytes, GB/s), or None where not measured
    copy: float
    op_seconds: float
    caches: str
    where: object  # bytes -> "in L3" | "from memory" ...

    def peak(self, precision):
        """The best matrix-product rate measured in `precision`: what training can at most reach."""
        return max(self.gemm[precision].values())

    def of_peak(self, flops, precision):
        """ "xx % of <limit>" for an achieved FLOP/s against the GEMM peak."""
        peak = self.peak(precision)
        return f"{flops / 1e9:5.0f} GFLOP/s = {100 * flops / 1e9 / peak:3.0f} % of the {precision} GEMM peak {peak:.0f}"

    def of_shape(self, flops, precision, shape):
        """ "xx % of <limit>" for an achieved FLOP/s against the GEMM rate at its own shape."""
        rate = self.gemm[precision][shape]
        share = 100 * flops / 1e9 / rate
        return f"{flops / 1e9:5.0f} GFLOP/s = {share:3.0f} % of {rate:.0f}, {precision} GEMM {shape}"

    def of_one_stream(self, chars_per_second, weight_bytes, ops_per_char):
        """ "xx % of <ceiling>" for one generating stream: per character it reads `weight_bytes` of weights,
        at best at the fp32 matvec's rate, and runs `ops_per_char` operations, each at least a small op."""
        size, rate = self.matvec
        seconds = weight_bytes / (rate * 1e9) + ops_per_char * self.op_seconds
        return (
            f"{100 * chars_per_second * seconds:3.0f} % of {1 / seconds:,.0f} chars/s = {weight_bytes / 1e6:.1f} MB of "
            f"weights at the fp32 matvec's {rate:.0f} GB/s ({self.where(size)}) + {ops_per_char:.0f} ops x "
            f"{self.op_seconds * 1e6:.1f} µs"
        )

    def __str__(self):
        gemm = "; ".join(
            f"{precision} " + ", ".join(f"{name} {rate:,.0f}" for name, rate in shapes.items())
            for precision, shapes in self.gemm.items()
        )
        matvec = ""
        if self.matvec:
            size, rate = self.matvec
            matvec = f"fp32 matvec {rate:.1f} GB/s over {size / 1e6:.1f} MB ({self.where(size)}); "
        return (
            f"GEMM GFLOP/s {gemm}\n  {matvec}copy from memory {self.copy:.1f} GB/s (read + written); "
            f"a small op {self.op_seconds * 1e6:.1f} µs; {self.caches}"
        )


def limits(device, cost=None, shapes=None):
    """cpu_limits or gpu_limits, by the device's type."""
    return (gpu_limits if torch.device(device).type == "cuda" else cpu_limits)(cost, shapes)


def cpu_limits(cost=None, shapes=None):
    """The CPU's own limits, in a few seconds: matrix products at `shapes` ({name: (m, k, n)}) and a
    2048^3 one, in fp32 and (where the CPU has bf16 kernels) bf16; a one-row product over a matrix
    of the model's weights' size (`cost`: a ModelCost; None: not measured), held in the caches by the
    repetition when it fits them; a 256 MiB copy from memory. Each the median of 5 timings."""
    sizes = cpu_caches()
    fits = [(level, size) for level, size in sizes if level >= 2]

    def where(nbytes):
        return next((f"in L{level}" for level, size in fits if nbytes <= size), "from memory")

    caches = ", ".join(f"L{level} {size / 2**20:g} MiB" for level, size in fits) or "cache sizes unknown"
    precisions = ["fp32"] + (["bf16"] if has_bf16_kernels("cpu") else [])
    return _measure(
        "cpu",
        cost,
        {**(shapes or {}), "2048^3": (2048, 2048, 2048)},
        precisions,
        2**26,
        f"caches (all cores) {caches}",
        where,
    )


def gpu_limits(cost=None, shapes=None):
    """The GPU's own limits, as cpu_limits: matrix products at `shapes` and an 8192^3 one in bf16 and
    fp32 (TF32 off), the one-row product over the model's weights, a 1 GiB device-to-device copy."""
    l2 = getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0)

    def where(nbytes):
        return "in L2" if l2 and nbytes <= l2 else "from memory" if l2 else "L2 size unknown"

    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        measured = _measure(
            "cuda",
            cost,
            {**(shapes or {}), "8192^3": (8192, 8192, 8192)},
            ["bf16", "fp32"],
            2**28,
            f"L2 {l2 / 2**20:g} MiB, TF32 off",
            where,
        )
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.cuda.empty_cache()  # give back the measurement's buffers
    return measured


def cpu_caches():
    """[(level, bytes over all cores)] of the data and unified caches, from Linux's sysfs (else [])."""
    found = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = int((index / "level").read_text())
            if (index / "type").read_text().strip() == "Instruction":
                continue
            size = (index / "size").read_text().strip()
            size = int(size[:-1]) * {"K": 2**10, "M": 2**20}[size[-1]] if size[-1] in "KM" else int(size)
            sharing = _count_cpus((index / "shared_cpu_list").read_text())
        except (OSError, ValueError, KeyError):
            continue
        found[level] = size * max(1, (os.cpu_count() or 1) // sharing)  # one instance per `sharing` CPUs
    return sorted(found.items())


def _count_cpus(cpu_list):
    """The number of CPUs in a list such as '0-3,8'."""
    count = 0
    for part in cpu_list.strip().split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


def _measure(device, cost, shapes, precisions, copy_numbers, caches, where):
    gemm, matvec = {}, None
    for precision in precisions:
        dtype, gemm[precision] = DTYPES[precision], {}
        for name, (m, k, n) in shapes.items():
            a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
            gemm[precision][name] = 2 * m * k * n / median_seconds(lambda: a @ b, device) / 1e9  # noqa: B023 (timed at once)
    if cost is not None:
        # the stepper's product: a (1, k) row by a column-major (n, k) fp32 matrix of the model's weights' size
        k = cost.gemm_width[0]
        weights = torch.randn(max(1, cost.weights // k), k, device=device).t().contiguous().t()
        x = torch.randn(1, k, device=device)
        nbytes = weights.numel() * weights.element_size()
        matvec = (nbytes, nbytes / median_seconds(lambda: F.linear(x, weights), device) / 1e9)
    source = torch.full((copy_numbers,), 1.0, device=device)  # written, so no page is a shared zero page
    target = torch.full_like(source, 2.0)
    copy = 2 * source.nbytes / median_seconds(lambda: target.copy_(source), device) / 1e9
    row, other = torch.randn(1, 2048, device=device), torch.randn(1, 2048, device=device)
    op_seconds = median_seconds(lambda: torch.add(row, other), device)
    return Limits(gemm, matvec, copy, op_seconds, caches, where)


def median_seconds(fn, device, timings=5, least=0.025):
    """Seconds per call of `fn`: the median of `timings` timings, each of as many calls as take at least
    `least` seconds (so a microsecond kernel is not timed alone), after a warm-up."""
    fn()
    device_sync(device)
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        device_sync(device)
        if time.perf_counter() - start >= least:
            break
        calls *= 2
    times = []
    for _ in range(timings):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        device_sync(device)
        times.append((time.perf_counter() - start) / calls)
    return sorted(times)[timings // 2]


def corpus_ids(name):
    """(vocab, memory-mapped ids) of a known corpus, fetched and encoded into bench/.data/ once."""
    source = corpus.resolve(name)
    raw, sha256 = corpus.fetch(source, DATA_DIR)
    ids_path, vocab_path = DATA_DIR / f"{name}.npy", DATA_DIR / f"{name}.vocab.json"
    if not vocab_path.exists() or Vocab.load(vocab_path).sha256 != sha256:
        vocab, _ = encode_file(raw, ids_path, name, sha256, source.origin, start=source.start, end=source.end)
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
