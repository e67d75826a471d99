"""The training loop: truncated BPTT over contiguous streams, periodic validation, best/last checkpoints.

Read `train()` top to bottom, as nanoGPT's train.py: set-up, resume, the loop, and the step that
validates and checkpoints. What the run is at and the files it writes are training/run.py's; where
the curves go is the caller's `tracker` (the train stage's MLflow run; nowhere by default).
"""

import math
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from charrnn.core.device import available_memory, pick_device, precision_context, resolve_precision
from charrnn.core.evaluate import evaluate
from charrnn.core.model import CharRNN, map_state, parameter_count, shape, training_bytes
from charrnn.data.batches import num_windows, windows
from charrnn.data.split import require_one_batch
from charrnn.errors import CharRNNError, deferred_interrupts
from charrnn.progress import Heartbeat, ends_at, say
from charrnn.training import distributed
from charrnn.training.run import Checkpointer, kept_at, restart_cudnn_dropout, run_fingerprint, start


class NoTracking:
    """A tracker that records nothing: train()'s default (tests, benchmarks, DDP ranks other than 0).

    A tracker is told `start(run id saved in last.pt or None, the resumed run's history rows)` once,
    before any file changes, and returns the id to save for a later resume; then `log(row)` at every
    validation."""

    def start(self, run_id, history):
        return run_id

    def log(self, row):
        pass


NO_TRACKING = NoTracking()


def train(p, train_ids, val_ids, vocab, out_dir, tracker=NO_TRACKING):
    """Train per params `p`; write best.pt / last.pt (and kept checkpoints) under `out_dir`.
    Returns (metrics dict, history rows {step, train_loss, val_loss, lr})."""
    # Set-up: the device (one per process under DDP), this process's share of the data, model, optimizer.
    device = distributed.init(pick_device(p.device))
    precision = resolve_precision(device, p.precision)
    ranks = distributed.world_size()
    require_one_batch("train", len(train_ids), p.batch_size, p.num_steps, ranks)
    require_memory(len(vocab), p, device)
    torch.manual_seed(p.seed)
    model = CharRNN.from_params(len(vocab), p).to(device)
    stepped = model  # what the training steps run: the model, or its DDP wrapper that averages gradients
    if ranks > 1:
        stepped = torch.nn.parallel.DistributedDataParallel(model)
        torch.manual_seed(p.seed + distributed.rank())  # same initial weights, different dropout masks
        train_ids = distributed.shard(train_ids)
    optimizer = torch.optim.Adam(model.parameters(), lr=p.learning_rate)
    total_steps = p.epochs * num_windows(train_ids, p.batch_size, p.num_steps)
    autocast = precision_context(device, precision)
    fingerprint = run_fingerprint(p, vocab, train_ids, val_ids, device, precision)
    saver = Checkpointer(out_dir, model, optimizer, vocab, fingerprint, p.keep_checkpoints)
    progress = Progress(
        total_steps,
        p.batch_size * p.num_steps * ranks,
        len(val_ids),
        lambda step: validations_after(step, total_steps, p.eval_every, p.keep_checkpoints),
    )

    # Resume an unfinished run of the same params, data and code from last.pt, or start afresh; the
    # tracker starts before any file changes, so an unreachable tracking server stops training here.
    state, hidden = start(saver, total_steps, p.resume, device, progress.say)
    state.tracking_run_id = tracker.start(state.tracking_run_id, state.history)
    saver.open_folder(fresh=state.step == 0)
    progress.say(
        f"model: {shape(model.config)}, {model.num_params():,} parameters for {len(train_ids) * ranks:,} training "
        f"characters; {total_steps:,} steps on {device} ({precision}, {threads_phrase()}"
        f"{f', {ranks} processes' if ranks > 1 else ''})"
    )

    # The loop: one optimizer step per window; the carried state restarts with each epoch. Every
    # eval_every steps, at a kept checkpoint and at the end: validate and checkpoint.
    progress.begin(state.step)
    loss_sum = torch.tensor(state.interval_loss, device=device)  # summed on the device: no host sync per step
    model.train()
    with deferred_interrupts(enabled=ranks == 1) as interrupted:  # DDP ranks stop at once, together
        for x, y, epoch_start in epoch_windows(train_ids, p, state.step, device):
            lr = learning_rate(state.step, total_steps, p)
            hidden = None if epoch_start else hidden  # a new epoch starts every stream at its text's beginning
            loss, hidden = train_step(stepped, optimizer, x, y, hidden, lr, p.grad_clip, autocast)
            loss_sum += loss
            state.step, state.interval_steps = state.step + 1, state.interval_steps + 1
            progress.step(lambda: f"train loss {loss_sum.item() / max(1, state.interval_steps):.4f}")  # noqa: B023 (now)
            if validation_due(state.step, total_steps, p.eval_every, p.keep_checkpoints):
                state.interval_loss = distributed.mean(loss_sum).item()
                validate_and_checkpoint(state, model, val_ids, device, lr, saver, hidden, progress, tracker)
                loss_sum = torch.zeros((), device=device)
            if interrupted:  # Ctrl-C or SIGTERM during this step: save this very step, then stop
                state.interval_loss = loss_sum.item()
                stop(state, saver, hidden, progress)
    progress.close()
    distributed.close()
    return summary(state, model, device, precision), state.history


def epoch_windows(train_ids, p, step, device):
    """(x, y, epoch_start) of every training window from the run's `step` to the end of the last
    epoch; epoch_start is true at each epoch's first window."""
    per_epoch = num_windows(train_ids, p.batch_size, p.num_steps)
    for epoch in range(step // per_epoch, p.epochs):
        first = step - epoch * per_epoch if epoch == step // per_epoch else 0
        for index, (x, y) in enumerate(windows(train_ids, p.batch_size, p.num_steps, device, start=first)):
            yield x, y, first + index == 0


def validation_due(step, total_steps, eval_every, keep_every):
    """Whether the run validates and checkpoints after `step`: every eval_every steps, at a kept
    checkpoint (every keep_every steps), and at the end."""
    return step % eval_every == 0 or step == total_steps or kept_at(step, keep_every)


def require_memory(vocab_size, p, device):
    """Refuse, before anything is allocated, a model too large to train here: a huge lstm_size was an
    allocator's traceback, or a training killed by the system once its memory ran out."""
    config = p.model_config()
    needed, free = training_bytes(vocab_size, config, p.batch_size, p.num_steps), available_memory(device)
    if free is not None and needed > free:
        count = parameter_count(vocab_size, **config)
        raise CharRNNError(
            f"a {shape(config)} model of {count:,} parameters needs about {needed / 2**30:,.1f} GiB to train "
            f"(weights, gradients, Adam's moments, a batch's activations), more than the {free / 2**30:,.1f} GiB "
            f"free on {device}: make lstm_size, num_layers or batch_size smaller"
        )


def validations_after(step, total_steps, eval_every, keep_every):
    """How many validations the run makes after `step` (validation_due's steps)."""
    return sum(validation_due(later, total_steps, eval_every, keep_every) for later in range(step + 1, total_steps + 1))


def validate_and_checkpoint(state, model, val_ids, device, lr, saver, hidden, progress, tracker):
    """This step's validation, its checkpoints, its row (with the chars/s of the steps since the last
    validation) to the tracker, and its progress line."""
    rate = state.add_training(*progress.lap(state.step))
    row = validate(state, model, val_ids, device, lr)
    saver.checkpoint(state, row, hidden)
    restart_cudnn_dropout(device)  # as a resume from this checkpoint would: exact resume
    tracker.log({**row, "chars_per_sec": rate})
    progress.validated(state, row, rate)


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


def stop(state, saver, hidden, progress):
    """Save last.pt at this very step and stop (KeyboardInterrupt): `dvc repro` resumes from it."""
    state.add_training(*progress.lap(state.step))
    saver.save_interrupted(state, hidden)
    progress.say(f"stopped at step {state.step}: {saver.last} saved, `dvc repro` resumes from it")
    raise KeyboardInterrupt


def summary(state, model, device, precision):
    """metrics/train.json: the last and best losses, the steps, the speed and what trained."""
    last = state.history[-1]
    return dict(
        train_loss=last["train_loss"],
        val_loss=last["val_loss"],
        best_val_loss=state.best_val_loss,
        best_step=state.best_step,
        steps=state.step,
        chars_per_sec=round(state.chars_trained / max(state.train_seconds, 1e-9), 1),
        num_params=model.num_params(),
        device=torch.device(device).type,
        precision=precision,
        threads=torch.get_num_threads(),  # fp32 results may differ in their last digits with another count
    )


def threads_phrase():
    count = torch.get_num_threads()
    return f"{count} CPU thread{'s' if count > 1 else ''}"


NO_AUTOCAST = nullcontext()  # fp32: a reusable context that does nothing


def train_step(model, optimizer, x, y, hidden, lr, grad_clip, autocast=NO_AUTOCAST):
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
    if step < p.warmup_steps:
        return p.learning_rate * (step + 1) / p.warmup_steps
    if p.lr_schedule == "constant":
        return p.learning_rate
    progress = (step - p.warmup_steps) / max(1, total_steps - p.warmup_steps)
    return p.min_lr + 0.5 * (p.learning_rate - p.min_lr) * (1 + math.cos(math.pi * progress))


class Progress:
    """What a person sees of a training (rank 0 only): a bar on a terminal, else a line every 30 s
    (charrnn.progress); after its first FIRST_ESTIMATE seconds, when it will end; a line per
    validation. Also the time of the training steps alone, validations excluded, for chars/s."""

    FIRST_ESTIMATE = 10.0  # seconds of training steps measured before the first estimate of the end

    def __init__(self, total_steps, chars_per_step, val_chars, validations_after):
        self.main = distributed.rank() == 0
        self.total_steps, self.chars_per_step, self.val_chars = total_steps, chars_per_step, val_chars
        self.validations_after = validations_after
        self.validation_seconds = None  # the last validation's, measured; estimated before the first
        self.heartbeat = None

    def say(self, text):
        if self.main:
            say(text)

    def begin(self, step):
        self.heartbeat = Heartbeat(
            "training",
            self.total_steps,
            "step",
            done=step,
            show=self.main,
            extra_seconds=self._validations_seconds,
            rate_as=("char", self.chars_per_step),
        )
        self.estimated = False
        self._restart(step)

    def step(self, detail):
        """One more step; `detail()` (the running train loss) is read only when a line is printed."""
        self.heartbeat.update(1, detail)
        if not self.estimated and self.heartbeat.working_seconds() >= self.FIRST_ESTIMATE:
            self.estimated = True
            self.say(
                f"{self.heartbeat.rate() * self.chars_per_step:,.0f} chars/s: "
                f"{ends_at(self.heartbeat.seconds_left())} (validations included)"
            )

    def lap(self, step):
        """(seconds, characters) of the training steps since the last lap, which ends at `step`; the bar
        pauses (a validation's time is not training time)."""
        seconds = time.perf_counter() - self.started
        chars = (step - self.started_step) * self.chars_per_step
        self._restart(step)
        self.heartbeat.pause()
        return seconds, chars

    def validated(self, state, row, rate):
        self.validation_seconds = time.perf_counter() - self.started
        self.heartbeat.resume()
        self.heartbeat.postfix(loss=f"{row['train_loss']:.3f}", val=f"{row['val_loss']:.3f}", chars_s=f"{rate:,.0f}")
        left = "" if state.finished else f", {ends_at(self.heartbeat.seconds_left())}"
        self.say(
            f"step {state.step:>6}/{self.total_steps} train {row['train_loss']:.4f} val {row['val_loss']:.4f} "
            f"lr {row['lr']:.2e} {rate:,.0f} chars/s{left}"
        )
        self._restart(state.step)  # the validation's time is not training time

    def close(self):
        self.heartbeat.close()

    def _validations_seconds(self):
        """The time the validations still to come will take: as long as the last one each, or before
        the first, the val split read forward (about a third of training's work per character)."""
        each = self.validation_seconds
        if each is None:
            each = self.val_chars / max(3 * self.heartbeat.rate() * self.chars_per_step, 1e-9)
        return self.validations_after(self.heartbeat.done) * each

    def _restart(self, step):
        self.started_step, self.started = step, time.perf_counter()
