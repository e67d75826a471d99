"""The training loop: truncated BPTT over contiguous streams, periodic validation, best/last checkpoints.

Read `train()` top to bottom: set-up, resume, the loop, and the evaluation/checkpoint step. The helpers
below it are small and named for what they do.
"""

import math
import shutil
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from charrnn import checkpoint, distributed
from charrnn.batches import num_windows, windows
from charrnn.errors import CharRNNError, deferred_interrupts
from charrnn.model import CharRNN, map_state
from charrnn.split import require_one_batch

# Params that do not change the trained weights: a last.pt made with other values of these resumes.
_NOT_TRAINING = {"resume"}


def train(p, train_ids, val_ids, vocab, out_dir, tracker=None):
    """Train per params `p`; write best.pt / last.pt (and kept checkpoints) under `out_dir`.

    `tracker`, if given, is told `start(run_id saved in last.pt, or None)` once, which returns the
    id to save for a later resume, and `log(row)` at every evaluation (see tracking.TrainingTracker).
    Returns (metrics dict, history rows {step, train_loss, val_loss, lr}).
    """
    out_dir = Path(out_dir)
    device = distributed.init(pick_device(p["device"]))
    main_rank, ranks = distributed.rank() == 0, distributed.world_size()
    torch.manual_seed(p["seed"])
    model = CharRNN.from_params(len(vocab), p)
    model.to(device)
    stepped = model  # what the training steps run: the model, or its DDP wrapper that averages gradients
    require_one_batch("train", len(train_ids), p["batch_size"], p["num_steps"], ranks)
    if ranks > 1:
        stepped = torch.nn.parallel.DistributedDataParallel(model)
        torch.manual_seed(p["seed"] + distributed.rank())  # same initial weights, different dropout masks
        train_ids = distributed.shard(train_ids)
    optimizer = torch.optim.Adam(model.parameters(), lr=p["learning_rate"])
    steps_per_epoch = num_windows(train_ids, p["batch_size"], p["num_steps"])
    total_steps = p["epochs"] * steps_per_epoch
    chars_per_step = p["batch_size"] * p["num_steps"] * ranks
    fingerprint = {**training_params(p), "corpus_sha256": vocab.sha256, "train_chars": len(train_ids),
                   "val_chars": len(val_ids)}

    run = resume(out_dir, fingerprint, model, optimizer, device) if p["resume"] else None
    tracking_run_id = run["tracking_run_id"] if run is not None else None
    if tracker is not None:  # before any file changes: an unreachable tracking server stops training here
        tracking_run_id = tracker.start(tracking_run_id)
    if run is None:
        run = dict(step=0, best_val_loss=math.inf, best_step=0, history=[], hidden=None,
                   train_seconds=0.0, chars_trained=0, interval_loss=0.0, interval_steps=0)
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    run["tracking_run_id"] = tracking_run_id
    (out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    say = print if main_rank else (lambda *args: None)
    precision = resolve_precision(device, p["precision"])
    say(f"model: {p['num_layers']}x{p['lstm_size']} {p['cell']}, {model.num_params():,} parameters "
        f"for {len(train_ids) * ranks:,} training characters; {total_steps:,} steps on {device} "
        f"({precision}{f', {ranks} processes' if ranks > 1 else ''})")

    device_type = torch.device(device).type
    autocast = precision_context(device, precision)
    bar = tqdm(total=total_steps, initial=run["step"], unit="step", disable=not (main_rank and sys.stderr.isatty()))
    model.train()
    loss_sum = torch.tensor(run["interval_loss"], device=device)  # since the last validation, on the device
    loss_count, interval_start = run["interval_steps"], time.perf_counter()
    hidden = run["hidden"]
    with deferred_interrupts(enabled=ranks == 1) as interrupted:  # DDP ranks stop at once, together
        for epoch in range(run["step"] // steps_per_epoch, p["epochs"]):
            first_window = run["step"] - epoch * steps_per_epoch
            if first_window == 0:
                hidden = None  # a new epoch starts every stream from the beginning of its text
            for x, y in windows(train_ids, p["batch_size"], p["num_steps"], device, start=first_window):
                lr = learning_rate(run["step"], total_steps, p)
                loss, hidden = train_step(stepped, optimizer, x, y, hidden, lr, p["grad_clip"], autocast)
                loss_sum += loss
                loss_count += 1
                run["step"] += 1
                bar.update()

                if run["step"] % p["eval_every"] == 0 or run["step"] == total_steps or _keep_now(run["step"], p):
                    train_loss = distributed.mean(loss_sum / loss_count).item()
                    seconds = time.perf_counter() - interval_start
                    run["train_seconds"] += seconds
                    run["chars_trained"] += loss_count * chars_per_step
                    val_loss = evaluate(model, val_ids, p["batch_size"], p["num_steps"], device, autocast)
                    _stop_if_diverged(train_loss, val_loss, run, out_dir)
                    row = dict(step=run["step"], train_loss=train_loss, val_loss=val_loss, lr=lr)
                    run["history"].append(row)
                    run.update(interval_loss=0.0, interval_steps=0)
                    rank_states = distributed.gather(_rank_state(hidden))  # every rank's, for an exact resume
                    if main_rank:
                        _checkpoint(run, row, rank_states, model, optimizer, vocab, fingerprint, out_dir, p)
                    rate = loss_count * chars_per_step / seconds
                    if tracker is not None:
                        tracker.log({**row, "chars_per_sec": rate})
                    bar.set_postfix(loss=f"{train_loss:.3f}", val=f"{val_loss:.3f}", chars_s=f"{rate:,.0f}")
                    if main_rank:
                        tqdm.write(f"step {run['step']:>6}/{total_steps} train {train_loss:.4f} val {val_loss:.4f} "
                                   f"lr {lr:.2e} {rate:,.0f} chars/s")
                        sys.stdout.flush()  # DVC pipes stdout: show progress now, not when the buffer fills
                    loss_sum, loss_count, interval_start = torch.zeros((), device=device), 0, time.perf_counter()

                if interrupted:  # Ctrl-C or SIGTERM during this step: save this very step, then stop
                    run.update(interval_loss=loss_sum.item(), interval_steps=loss_count)
                    _save_last(run, [_rank_state(hidden)], model, optimizer, vocab, fingerprint, out_dir,
                               step=run["step"])
                    say(f"stopped at step {run['step']}: {out_dir / 'last.pt'} saved, `dvc repro` resumes from it")
                    raise KeyboardInterrupt
    bar.close()

    last = run["history"][-1]
    metrics = dict(
        train_loss=last["train_loss"], val_loss=last["val_loss"], best_val_loss=run["best_val_loss"],
        best_step=run["best_step"], steps=run["step"],
        chars_per_sec=round(run["chars_trained"] / max(run["train_seconds"], 1e-9), 1),
        num_params=model.num_params(), device=device_type, precision=precision,
    )
    return metrics, run["history"]


def train_step(model, optimizer, x, y, hidden, lr, grad_clip, autocast=nullcontext()):
    """One optimizer step on the window (x, y) from the carried state `hidden`.

    Returns the loss and the new state, both detached and left on the device (no host sync).
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast:
        logits, hidden = model(x, hidden)
    loss = F.cross_entropy(logits.float().flatten(0, 1), y.long().flatten())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.detach(), map_state(hidden, torch.Tensor.detach)


@torch.no_grad()
def evaluate(model, ids, batch_size, num_steps, device, autocast=nullcontext()):
    """Mean cross-entropy (nats/char) over a whole split, state carried across windows, dropout off."""
    was_training = model.training
    model.eval()
    total, count, hidden = torch.zeros((), dtype=torch.float64, device=device), 0, None
    for x, y in windows(ids, batch_size, num_steps, device, partial=True):
        with autocast:
            logits, hidden = model(x, hidden)
        total += F.cross_entropy(logits.float().flatten(0, 1), y.long().flatten(), reduction="sum")
        count += y.numel()
    model.train(was_training)
    return (total / count).item()


def learning_rate(step, total_steps, p):
    """Linear warmup over warmup_steps, then constant or cosine decay to min_lr at the last step."""
    if step < p["warmup_steps"]:
        return p["learning_rate"] * (step + 1) / p["warmup_steps"]
    if p["lr_schedule"] == "constant":
        return p["learning_rate"]
    progress = (step - p["warmup_steps"]) / max(1, total_steps - p["warmup_steps"])
    return p["min_lr"] + 0.5 * (p["learning_rate"] - p["min_lr"]) * (1 + math.cos(math.pi * progress))


def precision_context(device, precision):
    """bf16 autocast on the device's type (the loss and optimizer stay fp32), or nothing for fp32."""
    if resolve_precision(device, precision) != "bf16":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def resolve_precision(device, precision):
    """'auto' is bf16 where the device has bf16 kernels, else fp32; bf16 where it has none is an error."""
    device_type = torch.device(device).type
    if precision == "auto":
        return "bf16" if has_bf16_kernels(device_type) else "fp32"
    if precision == "bf16" and not has_bf16_kernels(device_type):
        which = "GPU" if device_type == "cuda" else "CPU"
        capability = "" if device_type == "cuda" else f" (CPU capability {torch.backends.cpu.get_cpu_capability()})"
        raise CharRNNError(f"precision is bf16, but this {which} has no bf16 kernels{capability}: "
                           "use precision: auto or fp32")
    return precision


def has_bf16_kernels(device_type):
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    # oneDNN's bf16 RNN kernels need AVX512 (AVX512-BF16 or AMX to be fast); on AVX2 CPUs they fail
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def pick_device(name):
    cuda = torch.cuda.is_available()
    if name == "auto":
        return "cuda" if cuda else "cpu"
    if name == "cuda" and not cuda:
        raise CharRNNError("device is 'cuda' but no CUDA GPU is available here (use device: auto or cpu)")
    return name


def training_params(p):
    """The params that shape the weights: top-level keys, less the few that do not."""
    return {key: value for key, value in p.items() if "." not in key and key not in _NOT_TRAINING}


def resume(out_dir, fingerprint, model, optimizer, device):
    """Restore the run saved in last.pt if it was made by the same params and data; else None."""
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    if not last_path.exists():
        return None
    saved = _load_own(last_path)
    changed = sorted(k for k in fingerprint.keys() | saved["fingerprint"].keys()
                     if fingerprint.get(k) != saved["fingerprint"].get(k))
    if changed:
        print(f"not resuming from {last_path}: made with other {', '.join(changed)}")
        return None
    if not _best_belongs_to(best_path, saved["run"]["best_step"], fingerprint):
        print(f"not resuming from {last_path}: {best_path} is missing or from another run")
        return None
    model.load_state_dict(saved["model_state"])
    optimizer.load_state_dict(saved["optimizer_state"])
    state = saved["rank_states"][distributed.rank()]
    torch.set_rng_state(state["rng"])
    if state["cuda_rng"] is not None and device.startswith("cuda"):
        torch.cuda.set_rng_state(state["cuda_rng"])
    run = dict(interval_loss=0.0, interval_steps=0)  # older last.pt files lack these two
    run.update(saved["run"], hidden=map_state(state["hidden"], lambda t: t.to(device)))
    print(f"resuming from {last_path} at step {run['step']}")
    return run


def _best_belongs_to(best_path, best_step, fingerprint):
    """Whether best.pt is the run's: the step last.pt names, or a later one of a run with the same
    params and data (a kill between writing best.pt and last.pt leaves best.pt one validation ahead;
    the resumed run rewrites it identically)."""
    if not best_path.exists():
        return False
    best = _load_own(best_path)
    return best.get("step") == best_step or (best.get("fingerprint") == fingerprint and best["step"] > best_step)


def _load_own(path):
    """A checkpoint of this training; an unreadable one stops it rather than be overwritten by a fresh run."""
    try:
        return checkpoint.load(path)
    except CharRNNError as err:
        raise CharRNNError(f"{err}: restore it (`dvc checkout {path}`), or delete it or set resume: false "
                           "to train afresh") from None


def _keep_now(step, p):
    return p["keep_checkpoints"] > 0 and step % p["keep_checkpoints"] == 0


def _stop_if_diverged(train_loss, val_loss, run, out_dir):
    if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
        kept = f"{out_dir / 'best.pt'} keeps step {run['best_step']}" if run["best_step"] else "no checkpoint was written"
        raise CharRNNError(
            f"training diverged at step {run['step']} (loss {train_loss}): lower learning_rate or grad_clip; {kept}"
        )


def _rank_state(hidden):
    """What one rank must keep to continue exactly: its carried RNN state and its RNG states."""
    return dict(hidden=map_state(hidden, torch.Tensor.cpu), rng=torch.get_rng_state(),
                cuda_rng=torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None)


def _checkpoint(run, row, rank_states, model, optimizer, vocab, fingerprint, out_dir, p):
    """After an evaluation: best.pt if val improved, a kept copy if due, and always last.pt."""
    weights = dict(step=row["step"], val_loss=row["val_loss"], train_loss=row["train_loss"])
    if row["val_loss"] < run["best_val_loss"]:
        run["best_val_loss"], run["best_step"] = row["val_loss"], row["step"]
        checkpoint.save(out_dir / "best.pt", checkpoint.model_payload(model, vocab, **weights, fingerprint=fingerprint))
    if _keep_now(row["step"], p):
        name = f"i{row['step']}_l{p['lstm_size']}_v{row['val_loss']:.4f}.pt"
        checkpoint.save(out_dir / "checkpoints" / name, checkpoint.model_payload(model, vocab, **weights))
    _save_last(run, rank_states, model, optimizer, vocab, fingerprint, out_dir, **weights)


def _save_last(run, rank_states, model, optimizer, vocab, fingerprint, out_dir, **weights):
    """last.pt: the model and everything an exact resume needs."""
    saved_run = {key: value for key, value in run.items() if key != "hidden"}
    checkpoint.save(out_dir / "last.pt", checkpoint.model_payload(
        model, vocab, **weights,
        optimizer_state=optimizer.state_dict(),
        rank_states=rank_states,
        fingerprint=fingerprint,
        run=saved_run,
    ))
