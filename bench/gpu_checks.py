"""The checks behind bench/README.md's GPU facts: cuDNN runs the LSTM in bf16, the training loop never waits
for the GPU between validations, where resume is exact, DDP over NCCL, generation on the GPU.

    python bench/gpu_checks.py [--device cuda] [--checks cudnn,syncs,resume,generate]
    torchrun --standalone --nproc_per_node=1 bench/gpu_checks.py --checks ddp

Each check prints what it found and asserts nothing, so that one surprise does not hide the others.
It runs on the CPU too (smaller settings), to try it out before spending GPU time.
"""

import argparse
import io
import tempfile
import time
import traceback
import warnings
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import torch
import torch.distributed as dist
from common import corpus_ids, device_sync, gpu_limits, machine

from charrnn import params
from charrnn.core import checkpoint
from charrnn.core.device import pick_device, precision_context, resolve_precision
from charrnn.core.model import CharRNN
from charrnn.data.batches import windows
from charrnn.errors import CharRNNError, exit_on_error
from charrnn.generation.sample import generate
from charrnn.training import distributed
from charrnn.training.loop import train, train_step

from helpers.training import Killed, dying_after_checkpoint  # tests/helpers, on the path by common


def shakespeare(length):
    """(train ids, val ids, vocab): the first 90% of tiny-shakespeare's first `length` ids, and the rest."""
    vocab, ids = corpus_ids("tinyshakespeare")
    cut = int(length * 0.9)
    return ids[:cut], ids[cut:length], vocab


def run_params(device, **overrides):
    quick = dict(device=device, epochs=1, warmup_steps=10, eval_every=20, keep_checkpoints=0, resume=True)
    return params.validate({**params.defaults(), **quick, **overrides})


@contextmanager
def recorded_syncs():
    """Every host sync PyTorch reports (torch.cuda.set_sync_debug_mode), each as the innermost stack
    frame in charrnn or bench/ that led to it: a list of 'file:line function'."""
    syncs = []

    def record(message, category, filename, lineno, file=None, line=None):
        if "synchroniz" not in str(message):
            return
        ours = [f for f in traceback.extract_stack()[:-1] if "charrnn" in f.filename or "/bench/" in f.filename]
        frame = ours[-1] if ours else traceback.extract_stack()[-2]
        syncs.append(f"{Path(frame.filename).name}:{frame.lineno} {frame.name}")

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield syncs
        finally:
            torch.cuda.set_sync_debug_mode("default")


def tally(syncs):
    counts = {}
    for where in syncs:
        counts[where] = counts.get(where, 0) + 1
    return ", ".join(f"{where} x{n}" for where, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


def check_cudnn(device):
    """Which kernels a training step runs, and in what dtype the LSTM computes, per precision."""
    print(
        f"cudnn: available {torch.backends.cudnn.is_available()}, enabled {torch.backends.cudnn.enabled}, "
        f"version {torch.backends.cudnn.version()}; precision auto resolves to {resolve_precision(device, 'auto')}"
    )
    vocab, ids = corpus_ids("anna")
    is_cuda = torch.device(device).type == "cuda"
    for precision in ("bf16", "fp32") if resolve_precision(device, "auto") == "bf16" else ("fp32",):
        torch.manual_seed(0)
        model = CharRNN(len(vocab), "lstm", 512, 2, 0.5).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        autocast = precision_context(device, precision)
        dtypes = {}
        model.rnn.register_forward_hook(lambda m, i, o: dtypes.update(lstm_in=i[0].dtype, lstm_out=o[0].dtype))  # noqa: B023
        batches = windows(ids, 128, 100, device)
        for _ in range(3):  # warm-up
            x, y = next(batches)
            train_step(model, optimizer, x, y, None, 1e-3, 5.0, autocast)
        device_sync(device)
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if is_cuda else [])
        with torch.profiler.profile(activities=activities) as prof:
            x, y = next(batches)
            train_step(model, optimizer, x, y, None, 1e-3, 5.0, autocast)
            device_sync(device)
        events = prof.key_averages()
        ops = sorted({e.key for e in events if "rnn" in e.key.lower() or "lstm" in e.key.lower()})
        print(f"  {precision}: LSTM input {dtypes['lstm_in']}, output {dtypes['lstm_out']}; RNN ops: {', '.join(ops)}")
        if is_cuda:
            kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
            total = sum(e.self_device_time_total for e in kernels)
            print(f"    GPU time of one step {total / 1e3:.2f} ms; top kernels:")
            for e in sorted(kernels, key=lambda e: -e.self_device_time_total)[:8]:
                print(f"      {e.self_device_time_total / total:6.1%}  x{e.count:<4} {e.key[:110]}")


def check_syncs(device):
    """Host syncs in train_step and in train() between validations; how far the host runs ahead."""
    if torch.device(device).type != "cuda":
        print("syncs: skipped (needs CUDA)")
        return
    vocab, ids = corpus_ids("anna")
    torch.manual_seed(0)
    model = CharRNN(len(vocab), "lstm", 512, 2, 0.5).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    autocast = precision_context(device, "auto")
    batches, hidden = windows(ids, 256, 100, device), None
    for _ in range(3):
        x, y = next(batches)
        _, hidden = train_step(model, optimizer, x, y, hidden, 1e-3, 5.0, autocast)
    device_sync(device)
    with recorded_syncs() as syncs:
        for _ in range(20):
            x, y = next(batches)
            _, hidden = train_step(model, optimizer, x, y, hidden, 1e-3, 5.0, autocast)
    device_sync(device)
    print(f"syncs in 20 train_steps (2x512, batch 256 x 100, windows() feeding): {tally(syncs)}")

    steps = 40
    start = time.perf_counter()
    for _ in range(steps):
        x, y = next(batches)
        _, hidden = train_step(model, optimizer, x, y, hidden, 1e-3, 5.0, autocast)
    queued = time.perf_counter() - start
    device_sync(device)
    done = time.perf_counter() - start
    print(
        f"  {steps} steps: the host queued them in {queued:.3f} s, the GPU finished at {done:.3f} s "
        f"({queued / steps * 1e3:.2f} vs {done / steps * 1e3:.2f} ms/step)"
    )

    train_ids, val_ids, vocab = shakespeare(600_000)
    p = run_params(device, lstm_size=512, batch_size=64, num_steps=100, eval_every=40)  # 84 steps, 3 validations
    with tempfile.TemporaryDirectory() as out, recorded_syncs() as syncs:
        metrics, history = train(p, train_ids, val_ids, vocab, out)
    print(f"syncs in train() ({metrics['steps']} steps, {len(history)} validations): {tally(syncs)}")


def compare(a_history, a_state, b_history, b_state):
    """'identical', or how far two runs' val losses and final weights are apart."""
    same_history = a_history == b_history
    diff = max((a_state[k].float() - b_state[k].float()).abs().max().item() for k in a_state)
    if same_history and diff == 0:
        return "identical"
    val_diff = max(abs(a["val_loss"] - b["val_loss"]) for a, b in zip(a_history, b_history))
    return f"differ: val loss by up to {val_diff:.2e}, weights by up to {diff:.2e}"


def check_resume(device):
    """Per case: two uninterrupted runs (run to run) and a run killed after its 4th checkpoint, resumed."""
    is_cuda = torch.device(device).type == "cuda"
    train_ids, val_ids, vocab = shakespeare(300_000 if is_cuda else 40_000)
    base = (
        dict(lstm_size=256, batch_size=32, num_steps=50, eval_every=20)
        if is_cuda
        else dict(lstm_size=32, batch_size=32, num_steps=20, eval_every=10)
    )
    cases = [
        ("2 layers, dropout 0.3, auto precision", dict(dropout=0.3), False),
        ("1 layer, dropout 0.3, auto precision", dict(num_layers=1, dropout=0.3), False),
        ("2 layers, dropout 0, auto precision", dict(dropout=0.0), False),
        ("2 layers, dropout 0, fp32", dict(dropout=0.0, precision="fp32"), False),
        ("2 layers, dropout 0.3, fp32, cudnn.deterministic", dict(dropout=0.3, precision="fp32"), True),
        ("2 layers, dropout 0, fp32, cudnn.deterministic", dict(dropout=0.0, precision="fp32"), True),
    ]
    for name, overrides, deterministic in cases:
        p = run_params(device, **base, **overrides)
        torch.backends.cudnn.deterministic = deterministic
        with tempfile.TemporaryDirectory() as out:
            out = Path(out)
            runs = {}
            for run in ("whole", "again"):
                with redirect_stdout(io.StringIO()):
                    _, history = train(p, train_ids, val_ids, vocab, out / run)
                runs[run] = history, checkpoint.load(out / run / "last.pt")["model_state"]

            with dying_after_checkpoint(4), redirect_stdout(io.StringIO()):
                try:
                    train(p, train_ids, val_ids, vocab, out / "cut")
                except Killed:
                    pass
            with redirect_stdout(io.StringIO()) as said:
                _, history = train(p, train_ids, val_ids, vocab, out / "cut")
            if "resuming from" not in said.getvalue():
                print(f"    NOT RESUMED: {said.getvalue().splitlines()[0]}")
            runs["resumed"] = history, checkpoint.load(out / "cut" / "last.pt")["model_state"]
        torch.backends.cudnn.deterministic = False
        print(
            f"resume, {name} ({len(runs['whole'][0])} validations, {runs['whole'][0][-1]['step']} steps, "
            f"killed after step {runs['whole'][0][3]['step']}):"
        )
        print(f"    run to run:           {compare(*runs['whole'], *runs['again'])}")
        print(f"    resumed vs unbroken:  {compare(*runs['whole'], *runs['resumed'])}")


def check_generate(device):
    """One and 256 streams on the device: stream i of a batch is the single stream of seed i; syncs per step."""
    vocab, _ = corpus_ids("anna")
    torch.manual_seed(0)
    model = CharRNN(len(vocab), "lstm", 512, 2, 0.5).to(device)
    length = 300
    one = generate(model, vocab, "Far", length, top_k=5, seeds=[7], device=device)[0]
    batch = generate(model, vocab, "Far", length, top_k=5, seeds=range(256), device=device)
    print(f"generate on {device}: stream 7 of 256 equals the single stream of seed 7: {batch[7] == one}")
    if torch.device(device).type == "cuda":
        with recorded_syncs() as syncs:
            generate(model, vocab, "Far", length, top_k=5, seeds=range(256), device=device)
        print(f"  syncs while writing {length} characters x 256 streams: {tally(syncs)}")
        on_cpu = generate(model.cpu(), vocab, "Far", length, top_k=5, seeds=[7], device="cpu")[0]
        agree = next((i for i, (a, b) in enumerate(zip(one, on_cpu)) if a != b), len(one))
        print(f"  the same seed on the CPU agrees for the first {agree} of {len(one)} characters")


def check_ddp(device):
    """train() under torchrun: the process group's backend, steps and validations, the group destroyed."""
    seen = {}
    real_close = distributed.close

    def close():
        if dist.is_initialized():
            seen.update(backend=dist.get_backend(), world=dist.get_world_size(), rank=dist.get_rank())
        real_close()
        seen["destroyed"] = not dist.is_initialized()

    distributed.close = close
    is_cuda = torch.device(device).type == "cuda"
    train_ids, val_ids, vocab = shakespeare(300_000 if is_cuda else 20_000)
    p = run_params(
        device,
        lstm_size=256 if is_cuda else 32,
        batch_size=32,
        num_steps=50 if is_cuda else 10,
        eval_every=40 if is_cuda else 20,
    )
    with tempfile.TemporaryDirectory() as out:
        metrics, history = train(p, train_ids, val_ids, vocab, out)
        files = sorted(path.name for path in Path(out).iterdir())
    print(
        f"ddp: launched {distributed.launched()}, backend {seen.get('backend')}, world size {seen.get('world')}, "
        f"rank {seen.get('rank')}; {metrics['steps']} steps, {len(history)} validations, "
        f"best val {metrics['best_val_loss']:.4f}, device {metrics['device']}; wrote {files}; "
        f"process group destroyed: {seen.get('destroyed')}"
    )


CHECKS = dict(cudnn=check_cudnn, syncs=check_syncs, resume=check_resume, generate=check_generate, ddp=check_ddp)


@exit_on_error
def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--checks", default="cudnn,syncs,resume,generate", help=f"of {','.join(CHECKS)}")
    args = parser.parse_args()
    unknown = set(args.checks.split(",")) - set(CHECKS)
    if unknown:
        raise CharRNNError(f"--checks: {', '.join(sorted(unknown))} not known; the checks are {', '.join(CHECKS)}")
    device = pick_device(args.device)
    print(f"machine: {machine()}; device {device}")
    if device == "cuda":
        print(f"limits: {gpu_limits()}")
    for name in args.checks.split(","):
        start = time.perf_counter()
        try:
            CHECKS[name](device)
        except Exception:  # one failed check does not hide the others
            traceback.print_exc()
        print(f"  ({name}: {time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
