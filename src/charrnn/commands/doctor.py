"""`charrnn doctor`: what this machine will do with params.yaml, said in seconds before minutes are spent.

The machine (CPU features, GPU), what `auto` picks (device, precisions, threads), where the corpus
and the MLflow store are, whether the optional parts' programs are here, and how long `dvc repro`
of params.yaml will take: a short burst of the very model's training steps, evaluation and
generation on this machine, times the work the pipeline will do, plus the stages' own costs.
"""

import glob
import os
import platform
import shutil
import time
from pathlib import Path

import torch

from charrnn import project_root
from charrnn.core.device import pick_device, precision_context, resolve_precision
from charrnn.core.evaluate import evaluate
from charrnn.core.model import CharRNN, shape
from charrnn.data import corpus
from charrnn.data.batches import num_windows
from charrnn.data.corpus import read_chunks
from charrnn.data.split import split_bounds
from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.generation.rules import check_sampling, sampling_options
from charrnn.generation.sample import generate
from charrnn.generation.steppers import generation_precision
from charrnn.progress import duration
from charrnn.training.loop import require_memory, train_step, validations_after

BURST_SECONDS = 4.0  # timed training steps (after two untimed ones), at least 3 steps
# What the stages cost besides the work counted from params, from the default pipeline's own lines on a
# 2-core Zen 4 (bench/README.md): fetch to split 3 s, each later stage 3-5 s of start-up (torch, MLflow),
# DVC's lock updates between them about 1 s each; log_models 6 s for 4 models.
STAGE_SECONDS = 30.0
LOGGED_MODEL_SECONDS = 1.0  # log_models: one kept checkpoint saved as an MLflow model, with its input example


def cpu_name():
    """The CPU as /proc/cpuinfo names it, with its family and model numbers (a VM often says only "AMD EPYC")."""
    info = {}
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
            if not line.strip():
                break
    except OSError:
        return platform.processor() or platform.machine()
    flags = set(info.get("flags", "").split())
    features = [
        name
        for flag, name in (("avx2", "AVX2"), ("avx512f", "AVX512"), ("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX"))
        if flag in flags
    ]
    return (
        f"{info.get('model name', platform.machine())} (family {info.get('cpu family', '?')} model "
        f"{info.get('model', '?')}; {', '.join(features) or 'no AVX2'})"
    )


def corpus_text(source):
    """(path, where it was found) of the corpus `source` on this machine, or (None, what is missing)."""
    if source.source is not None:
        return Path(source.source), "your own file"
    raw = corpus.raw_path(source, project_root() / "data" / "raw")
    if raw.is_file():
        return raw, "data/raw (fetched)"
    mirror = os.environ.get(corpus.MIRROR_ENV)
    if mirror and (project_root() / mirror / source.filename).is_file():
        return project_root() / mirror / source.filename, f"the mirror {corpus.MIRROR_ENV}={mirror}"
    where = f"not in the mirror {mirror}" if mirror else f"{corpus.MIRROR_ENV} not set"
    return None, f"not fetched yet, {where}: `dvc repro` downloads {source.url}"


def count_text(path, source):
    """(characters, the vocabulary) of the corpus text as the prepare stage reads it."""
    chars, length = set(), 0
    for chunk in read_chunks(path, source.start, source.end):
        chars.update(chunk)
        length += len(chunk)
    return length, Vocab(chars=tuple(sorted(chars)), corpus=source.name)


def burst(p, vocab_size, device, precision):
    """Seconds per training step of params' model on this device, measured over BURST_SECONDS; and
    the model, trained that little, for the evaluation and generation timings."""
    torch.manual_seed(p.seed)
    model = CharRNN.from_params(vocab_size, p).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=p.learning_rate)
    autocast = precision_context(device, precision)
    ids = torch.randint(vocab_size, (p.batch_size, p.num_steps + 1), device=device)
    hidden, steps, started = None, -2, None  # the first two steps set kernels up, untimed
    while steps < 3 or time.perf_counter() - started < BURST_SECONDS:
        _, hidden = train_step(
            model, optimizer, ids[:, :-1], ids[:, 1:], hidden, p.learning_rate, p.grad_clip, autocast
        )
        _sync(device)
        steps += 1
        if steps == 0:
            started = time.perf_counter()
    return (time.perf_counter() - started) / steps, model


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def eval_seconds_per_char(model, vocab_size, device, chars):
    ids = torch.randint(vocab_size, (chars,)).numpy().astype("uint16")
    started = time.perf_counter()
    evaluate(model, ids, device)
    return (time.perf_counter() - started) / chars


def generation_seconds_per_char(model, vocab_size, p, device, precision):
    vocab = Vocab(chars=tuple(chr(0x100 + i) for i in range(vocab_size)))
    length = 200
    seeds = range(p.sample.num_samples)
    generate(model, vocab, vocab.chars[0], 10, seeds=seeds, device=device, precision=precision)  # set-up
    started = time.perf_counter()
    generate(
        model, vocab, vocab.chars[0], length, top_k=min(5, vocab_size), seeds=seeds, device=device, precision=precision
    )
    return (time.perf_counter() - started) / length


def estimate(p, length, vocab_size, device, precision, generation):
    """(seconds, lines explaining them) of `dvc repro` of params `p` on a corpus of `length` characters,
    training in `precision` and generating in `generation`."""
    bounds = split_bounds(length, p.train_frac, p.val_frac, p.test_frac)
    train_chars, val_chars, test_chars = (bounds[name][1] - bounds[name][0] for name in ("train", "val", "test"))
    steps = p.epochs * num_windows(range(train_chars), p.batch_size, p.num_steps)
    step_seconds, model = burst(p, vocab_size, device, precision)
    per_val_char = eval_seconds_per_char(model, vocab_size, device, min(val_chars, 50_000))
    per_generated = generation_seconds_per_char(model, vocab_size, p, device, generation)
    kept = steps // p.keep_checkpoints if p.keep_checkpoints else 0
    validations = validations_after(0, steps, p.eval_every, p.keep_checkpoints)
    parts = {
        "training": steps * step_seconds,
        "its validations": validations * val_chars * per_val_char,
        "evaluate": (val_chars + test_chars) * per_val_char,
        "sample": (kept + 1) * p.sample.length * per_generated,
        "log_models": (kept + 1) * LOGGED_MODEL_SECONDS,
        "the stages' start-up": STAGE_SECONDS,
    }
    chars_per_sec = p.batch_size * p.num_steps / step_seconds
    lines = [
        f"{shape(model.config)}: {steps:,} steps of {p.batch_size} x {p.num_steps} characters "
        f"({p.epochs} epochs of {train_chars:,}) at {chars_per_sec:,.0f} chars/s "
        f"(measured over {BURST_SECONDS:g} s), {validations} validations, {kept} kept checkpoints",
        ", ".join(f"{name} {duration(seconds)}" for name, seconds in parts.items()),
    ]
    return sum(parts.values()), lines


def tools():
    """(name, what) of the optional parts' programs: PostgreSQL for the team tests, Chromium for the pictures."""
    initdb = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))), None)
    chromium = next(
        (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
    )
    return [
        (
            "PostgreSQL",
            f"{initdb} (the team tests start a server with it)"
            if initdb
            else "no initdb: the team tests skip (apt-get install postgresql)",
        ),
        (
            "Chromium",
            f"{chromium} (docs/screenshots.py takes the pictures with it)"
            if chromium
            else "not installed: only docs/screenshots.py needs it (apt-get install chromium)",
        ),
    ]


def store_line():
    """Where the runs will go, and whether that store answers (a new local store is not made here)."""
    from charrnn.tracking import store

    named = os.environ.get("MLFLOW_TRACKING_URI")
    uri = named or f"sqlite:///{store.local_store() / 'mlflow.db'}"
    where = "MLFLOW_TRACKING_URI" if named else "the project's own store"
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return f"{store.redacted(uri)} ({where}; the first training creates it)"
    try:
        store.connect()
    except CharRNNError as err:
        return f"{store.redacted(uri)} ({where}): NOT usable: {err}"
    return f"{store.redacted(uri)} ({where}; reachable)"


def doctor(p, threads):
    """Print what this machine will do with params `p` (threads already set: `threads` of them)."""
    device = pick_device(p.device)
    precision = resolve_precision(device, p.precision)
    generation = generation_precision(p.sample.precision, device, p.cell)
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "none (training runs on the CPU)"
    report = [
        (
            "CPU",
            f"{cpu_name()}, {os.cpu_count()} CPUs; torch {torch.__version__}, "
            f"kernels {torch.backends.cpu.get_cpu_capability()}",
        ),
        ("GPU", gpu),
        (
            "device",
            f"{device}: training in {precision} (precision: {p.precision}), generation in "
            f"{generation} "
            f"(sample.precision: {p.sample.precision}), {threads} CPU thread{'s' * (threads > 1)} "
            f"(threads: {p.threads})",
        ),
    ]
    source = corpus.resolve(p.corpus)
    path, where = corpus_text(source)
    report.append(("corpus", f"{p.corpus}: {path} ({where})" if path else f"{p.corpus}: {where}"))
    report.append(("MLflow", store_line()))
    report += tools()
    width = max(len(name) for name, _ in report)
    for name, text in report:
        print(f"{name:<{width}}  {text}", flush=True)
    if path is None:
        print(f"{'estimate':<{width}}  none: the corpus is not on this machine yet")
        return
    length, vocab = count_text(path, source)
    try:  # the sample stage's options, now rather than after the training
        check_sampling(vocab, **sampling_options(p.sample), num_samples=p.sample.num_samples)
    except CharRNNError as err:
        raise CharRNNError(f"params.yaml sample section: {err}") from None
    require_memory(len(vocab), p, device)
    print(f"{'estimate':<{width}}  measuring a few seconds of training...", flush=True)
    seconds, lines = estimate(p, length, len(vocab), device, precision, generation)
    print(f"{'':<{width}}  `dvc repro` from scratch: about {duration(seconds)}")
    for line in lines:
        print(f"{'':<{width}}    {line}")
