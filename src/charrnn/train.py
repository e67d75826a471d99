"""The training loop: truncated BPTT over contiguous streams, periodic validation, best/last checkpoints.

Read `train()` top to bottom, as nanoGPT's train.py: set-up, resume, the loop, and the step that
validates and checkpoints. The run's plain-value state is a RunState, saved in last.pt; the files are
written by a checkpoint.Checkpointer.
"""

import math
import sys
import time
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from tqdm import tqdm

from charrnn import distributed, modules
from charrnn.batches import num_windows, windows
from charrnn.checkpoint import Checkpointer, restart_cudnn_dropout, restore_rank_state
from charrnn.device import pick_device, precision_context, resolve_precision
from charrnn.errors import CharRNNError, deferred_interrupts
from charrnn.evaluate import evaluate
from charrnn.model import CharRNN, map_state
from charrnn.split import require_one_batch

# Params that do not change the trained weights: a last.pt made with other values of these resumes.
_NOT_TRAINING = {"resume"}


@dataclass
class RunState:
    """What a training run is at, less its tensors; saved in last.pt, so that a resume continues exactly."""

    run_id: str  # new for each training from scratch; best.pt carries it, so a resume knows its own best.pt
    total_steps: int
    step: int = 0
    best_val_loss: float = math.inf
    best_step: int = 0
    history: list = field(default_factory=list)  # a {step, train_loss, val_loss, lr} row per validation
    train_seconds: float = 0.0  # time in training steps (validation excluded) and the characters they
    chars_trained: int = 0  # trained: chars_per_sec is their ratio
    interval_loss: float = 0.0  # train loss summed over the steps since the last validation
    interval_steps: int = 0
    tracking_run_id: str | None = None  # the MLflow run, continued on resume

    @property
    def finished(self):
        return self.step >= self.total_steps


def train(p, train_ids, val_ids, vocab, out_dir, tracker=None):
    """Train per params `p`; write best.pt / last.pt (and kept checkpoints) under `out_dir`.

    `tracker`, if given, is told `start(run id saved in last.pt, or None)` once, which returns the id
    to save for a later resume, and `log(row)` at every validation (see tracking.TrainingTracker).
    Returns (metrics dict, history rows {step, train_loss, val_loss, lr}).
    """
    # Set-up: the device (one per process under DDP), this process's share of the data, model, optimizer.
    device = distributed.init(pick_device(p["device"]))
    precision = resolve_precision(device, p["precision"])
    ranks, main_rank = distributed.world_size(), distributed.rank() == 0
    say = _print_now if main_rank else (lambda text: None)
    require_one_batch("train", len(train_ids), p["batch_size"], p["num_steps"], ranks)
    torch.manual_seed(p["seed"])
    model = CharRNN.from_params(len(vocab), p).to(device)
    stepped = model  # what the training steps run: the model, or its DDP wrapper that averages gradients
    if ranks > 1:
        stepped = torch.nn.parallel.DistributedDataParallel(model)
        torch.manual_seed(p["seed"] + distributed.rank())  # same initial weights, different dropout masks
        train_ids = distributed.shard(train_ids)
    optimizer = torch.optim.Adam(model.parameters(), lr=p["learning_rate"])
    steps_per_epoch = num_windows(train_ids, p["batch_size"], p["num_steps"])
    total_steps = p["epochs"] * steps_per_epoch
    chars_per_step = p["batch_size"] * p["num_steps"] * ranks
    autocast = precision_context(device, precision)
    fingerprint = run_fingerprint(p, vocab, train_ids, val_ids, device, precision)
    saver = Checkpointer(out_dir, model, optimizer, vocab, fingerprint, p["keep_checkpoints"])

    # Resume an unfinished run of the same params, data and code from last.pt, or start afresh.
    state, hidden = resume(saver, device, say) if p["resume"] else (None, None)
    tracking_run_id = state.tracking_run_id if state else None
    if tracker is not None:  # before any file changes: an unreachable tracking server stops training here
        tracking_run_id = tracker.start(tracking_run_id)
    saver.open_folder(fresh=state is None)
    if state is None:
        state = RunState(run_id=uuid.uuid4().hex, total_steps=total_steps)
    state.tracking_run_id = tracking_run_id
    say(f"model: {p['num_layers']}x{p['lstm_size']} {p['cell']}, {model.num_params():,} parameters "
        f"for {len(train_ids) * ranks:,} training characters; {total_steps:,} steps on {device} "
        f"({precision}{f', {ranks} processes' if ranks > 1 else ''})")

    # The loop: one optimizer step per window; the carried state restarts with each epoch.
    bar = tqdm(total=total_steps, initial=state.step, unit="step", disable=not (main_rank and sys.stderr.isatty()))
    loss_sum = torch.tensor(state.interval_loss, device=device)  # summed on the device: no host sync per step
    clock = StepClock(state.step, chars_per_step)
    model.train()
    with deferred_interrupts(enabled=ranks == 1) as interrupted:  # DDP ranks stop at once, together
        for epoch in range(state.step // steps_per_epoch, p["epochs"]):
            first_window = state.step - epoch * steps_per_epoch
            if first_window == 0:
                hidden = None  # a new epoch starts every stream from the beginning of its text
            for x, y in windows(train_ids, p["batch_size"], p["num_steps"], device, start=first_window):
                lr = learning_rate(state.step, total_steps, p)
                loss, hidden = train_step(stepped, optimizer, x, y, hidden, lr, p["grad_clip"], autocast)
                loss_sum += loss
                state.step += 1
                state.interval_steps += 1
                bar.update()

                # Every eval_every steps, at a kept checkpoint and at the end: validate and checkpoint.
                if state.step % p["eval_every"] == 0 or state.finished or saver.keep_due(state.step):
                    state.interval_loss = distributed.mean(loss_sum).item()
                    rate = clock.lap(state)
                    row = validate(state, model, val_ids, device, lr)
                    saver.checkpoint(state, row, hidden)
                    restart_cudnn_dropout(device)  # as a resume from this checkpoint would: exact resume
                    if tracker is not None:
                        tracker.log({**row, "chars_per_sec": rate})
                    bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}", chars_s=f"{rate:,.0f}")
                    say(f"step {state.step:>6}/{total_steps} train {row['train_loss']:.4f} val {row['val_loss']:.4f} "
                        f"lr {lr:.2e} {rate:,.0f} chars/s")
                    loss_sum = torch.zeros((), device=device)
                    clock.restart(state.step)  # the validation's time is not training time

                if interrupted:  # Ctrl-C or SIGTERM during this step: save this very step, then stop
                    state.interval_loss = loss_sum.item()
                    clock.lap(state)
                    saver.save_interrupted(state, hidden)
                    say(f"stopped at step {state.step}: {saver.last} saved, `dvc repro` resumes from it")
                    raise KeyboardInterrupt
    bar.close()
    distributed.close()

    last = state.history[-1]
    metrics = dict(
        train_loss=last["train_loss"], val_loss=last["val_loss"], best_val_loss=state.best_val_loss,
        best_step=state.best_step, steps=state.step,
        chars_per_sec=round(state.chars_trained / max(state.train_seconds, 1e-9), 1),
        num_params=model.num_params(), device=torch.device(device).type, precision=precision,
    )
    return metrics, state.history


def validate(state, model, val_ids, device, lr):
    """The history row of this step: the mean train loss since the last validation and the val loss
    over the whole val split (by the evaluation protocol); notes a new best. Stops if either diverged."""
    train_loss = state.interval_loss / state.interval_steps
    # rank 0 validates; the others take its figure, so that they all stop together if it diverged
    val_loss = distributed.broadcast(evaluate(model, val_ids, device) if distributed.rank() == 0 else 0.0)
    if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
        kept = f"best.pt keeps step {state.best_step}" if state.best_step else "no checkpoint was written"
        raise CharRNNError(
            f"training diverged at step {state.step} (loss {train_loss}): lower learning_rate or grad_clip; {kept}"
        )
    row = dict(step=state.step, train_loss=train_loss, val_loss=val_loss, lr=lr)
    state.history.append(row)
    state.interval_loss, state.interval_steps = 0.0, 0
    if val_loss < state.best_val_loss:
        state.best_val_loss, state.best_step = val_loss, state.step
    return row


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


def learning_rate(step, total_steps, p):
    """Linear warmup over warmup_steps, then constant or cosine decay to min_lr at the last step."""
    if step < p["warmup_steps"]:
        return p["learning_rate"] * (step + 1) / p["warmup_steps"]
    if p["lr_schedule"] == "constant":
        return p["learning_rate"]
    progress = (step - p["warmup_steps"]) / max(1, total_steps - p["warmup_steps"])
    return p["min_lr"] + 0.5 * (p["learning_rate"] - p["min_lr"]) * (1 + math.cos(math.pi * progress))


class StepClock:
    """Times the training steps alone: started at a step, `lap` adds the time and characters since
    then to the run's totals and returns their chars/s; `restart` after a validation."""

    def __init__(self, step, chars_per_step):
        self.chars_per_step = chars_per_step
        self.restart(step)

    def restart(self, step):
        self.step, self.started = step, time.perf_counter()

    def lap(self, state):
        seconds = time.perf_counter() - self.started
        chars = (state.step - self.step) * self.chars_per_step
        state.train_seconds += seconds
        state.chars_trained += chars
        self.restart(state.step)
        return chars / max(seconds, 1e-9)


def training_params(p):
    """The params that shape the weights: top-level keys, less the few that do not."""
    return {key: value for key, value in p.items() if "." not in key and key not in _NOT_TRAINING}


def run_fingerprint(p, vocab, train_ids, val_ids, device, precision):
    """What a resumed run must share with the run in last.pt: the training params, the data, the code
    of every package module that training runs (train.py and what it imports), the device type and
    the precision. Keys are `kind:name`, so a mismatch can be told by kind."""
    return {
        **{f"params:{key}": value for key, value in training_params(p).items()},
        "data:corpus_sha256": vocab.sha256, "data:train_chars": len(train_ids), "data:val_chars": len(val_ids),
        **{f"code:{name}": digest for name, digest in modules.checksums(modules.closure("train")).items()},
        "device:type": torch.device(device).type, "device:precision": precision,
    }


def fingerprint_changes(saved, current):
    """What differs between two fingerprints, in words: e.g. 'params lstm_size; code model.py'."""
    changed = {}
    for key in sorted(saved.keys() | current.keys()):
        if saved.get(key) != current.get(key):
            kind, _, name = key.partition(":")
            changed.setdefault(kind, []).append(name)
    return "; ".join(f"{kind} {', '.join(names)}" for kind, names in changed.items())


def resume(saver, device, say):
    """(RunState, carried RNN state) of the unfinished run in last.pt, restored into the model and
    optimizer, if it was made by the same params, data and code; else (None, None) and one line why."""
    last = saver.read(saver.last)
    if last is None:
        return None, None
    saved_run = last.get("run", {})
    if set(saved_run) != {f.name for f in fields(RunState)}:
        say(f"not resuming from {saver.last}: written by another version of charrnn; training afresh")
        return None, None
    state = RunState(**saved_run)
    if state.finished:
        say(f"{saver.last} holds a finished run: training afresh")
        return None, None
    changed = fingerprint_changes(last["fingerprint"], saver.fingerprint)
    if changed:
        say(f"not resuming the unfinished run in {saver.last} (step {state.step} of {state.total_steps}): "
            f"changed since: {changed}; training afresh")
        return None, None
    best = saver.read(saver.best)
    if state.best_step and not (best and best.get("run_id") == state.run_id and best["step"] >= state.best_step):
        # best.pt may be one validation ahead (a kill between the two writes): the resumed run rewrites it
        say(f"not resuming from {saver.last}: {saver.best} is missing or from another run; training afresh")
        return None, None
    saver.model.load_state_dict(last["model_state"])
    saver.optimizer.load_state_dict(last["optimizer_state"])
    hidden = restore_rank_state(last["rank_states"][distributed.rank()], device)
    say(f"resuming from {saver.last} at step {state.step}")
    return state, hidden


def _print_now(text):
    """A line of output that leaves a progress bar intact, flushed: DVC pipes stdout."""
    tqdm.write(text)
    sys.stdout.flush()
