"""A training run's state and files: what it is at (RunState), where it writes (Checkpointer: best.pt,
last.pt, kept copies), and whether an earlier run's last.pt may be continued (resume): the same params,
data and code, by the run's fingerprint.
"""

import math
import shutil
import uuid
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from charrnn import modules
from charrnn.core.checkpoint import load, model_payload, save
from charrnn.core.model import map_state
from charrnn.errors import CharRNNError
from charrnn.training import distributed

# Params that do not change the trained weights: a last.pt made with other values of these resumes.
NOT_TRAINING = {"resume"}


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

    def add_training(self, seconds, chars):
        """Add a lap of training steps (its seconds and characters) to the totals; return its chars/s."""
        self.train_seconds += seconds
        self.chars_trained += chars
        return chars / max(seconds, 1e-9)


def kept_at(step, keep_every):
    """Whether a copy of the model is kept at `step` (`keep_checkpoints`: every keep_every steps; 0 = never)."""
    return keep_every > 0 and step % keep_every == 0


class Checkpointer:
    """The checkpoints of one training run under `folder`: best.pt (the lowest val loss so far),
    last.pt (everything an exact resume needs), and a kept copy in checkpoints/ every `keep_every`
    steps (0: none)."""

    def __init__(self, folder, model, optimizer, vocab, fingerprint, keep_every):
        self.model, self.optimizer, self.vocab, self.fingerprint = model, optimizer, vocab, fingerprint
        self.keep_every = keep_every
        folder = Path(folder)
        self.best, self.last, self.kept = folder / "best.pt", folder / "last.pt", folder / "checkpoints"

    def keep_due(self, step):
        return kept_at(step, self.keep_every)

    def checkpoint(self, state, row, hidden):
        """After the validation `row` of the run `state` (a RunState): best.pt if this step is the best
        so far, a kept copy if one is due, and always last.pt. Every rank calls it; rank 0 writes."""
        rank_states = distributed.gather(rank_state(hidden))  # every rank's, for an exact resume
        if distributed.rank() != 0:
            return
        if state.best_step == row["step"]:
            save(self.best, self._payload(row, run_id=state.run_id, fingerprint=self.fingerprint))
        if self.keep_due(row["step"]):
            lstm_size = self.model.config["lstm_size"]
            kept = self.kept / f"i{row['step']}_l{lstm_size}_v{row['val_loss']:.4f}.pt"
            save(kept, self._payload(row, run_id=state.run_id))  # the later stages adopt only its run's
        self._save_last(row, state, rank_states)

    def save_interrupted(self, state, hidden):
        """last.pt at the step training was interrupted in (one process: DDP ranks are not interrupted)."""
        self._save_last({"step": state.step}, state, [rank_state(hidden)])

    def read(self, path):
        """A checkpoint of this training, or None if there is none; an unreadable one stops training
        rather than be overwritten by a fresh run."""
        if not path.exists():
            return None
        try:
            return load(path)
        except CharRNNError as err:
            raise CharRNNError(
                f"{err}: restore it (`dvc checkout {path}`), or delete it or set resume: false to train afresh"
            ) from None

    def open_folder(self, fresh):
        """Make rank 0's folder ready (other ranks write nothing): a fresh run starts without the kept
        copies of an earlier one, and checkpoints/ exists even when none are kept (DVC expects every out)."""
        if distributed.rank() != 0:
            return
        if fresh:
            shutil.rmtree(self.kept, ignore_errors=True)
        self.kept.mkdir(parents=True, exist_ok=True)

    def _save_last(self, row, state, rank_states):
        """best.pt and last.pt carry the run's id: a resume accepts only its own run's best.pt."""
        save(
            self.last,
            self._payload(
                row,
                optimizer_state=self.optimizer.state_dict(),
                rank_states=rank_states,
                fingerprint=self.fingerprint,
                run=asdict(state),
            ),
        )

    def _payload(self, row, **extra):
        return model_payload(self.model, self.vocab, **row, **extra)


def rank_state(hidden):
    """What one rank must keep to continue exactly: its carried RNN state and its RNG states."""
    return dict(
        hidden=map_state(hidden, torch.Tensor.cpu),
        rng=torch.get_rng_state(),
        cuda_rng=torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
    )


def restore_rank_state(saved, device):
    """Put back the RNG states saved by rank_state(); returns the carried RNN state on `device`."""
    torch.set_rng_state(saved["rng"])
    if saved["cuda_rng"] is not None and device.startswith("cuda"):
        torch.cuda.set_rng_state(saved["cuda_rng"])
    return map_state(saved["hidden"], lambda tensor: tensor.to(device))


def restart_cudnn_dropout(device):
    """Make the rest of a run draw the same dropout masks as a run resumed from the checkpoint just
    saved. cuDNN keeps the random state of the dropout between RNN layers to itself, outside
    torch.cuda.get_rng_state(), and PyTorch starts it afresh from the CUDA generator once the
    generator's state is set, as restore_rank_state() does on resume: setting it to itself here
    restarts it the same way. Nothing to do on the CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(torch.cuda.get_rng_state())


def training_params(p):
    """The params that shape the weights: top-level keys, less the few that do not."""
    return {key: value for key, value in p.flat(skip=("sample", "tracking")).items() if key not in NOT_TRAINING}


def run_fingerprint(p, vocab, train_ids, val_ids, device, precision):
    """What a resumed run must share with the run in last.pt: the training params, the data, the code
    of every package module that training runs (training/loop.py and what it imports), the device type and
    the precision. Keys are `kind:name`, so a mismatch can be told by kind."""
    return {
        **{f"params:{key}": value for key, value in training_params(p).items()},
        "data:corpus_sha256": vocab.sha256,
        "data:train_chars": len(train_ids),
        "data:val_chars": len(val_ids),
        **{
            f"code:{name}": digest
            for name, digest in modules.checksums(modules.closure("charrnn.training.loop")).items()
        },
        "device:type": torch.device(device).type,
        "device:precision": precision,
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
    """(RunState, carried RNN state) of the run in last.pt, restored into the model and optimizer, if it
    was made by the same params, data and code; else (None, None) and one line why. A finished run is
    the result itself: the stage completes from it (whatever failed after its loop) without training.

    Rank 0 decides, from its own folder, and hands the checkpoint to every rank: on several nodes each
    node has a folder of its own, and only rank 0's holds the run's checkpoints."""
    try:
        last = distributed.broadcast(_resumable(saver, say) if distributed.rank() == 0 else None)
        if last is None:
            return None, None
        saver.model.load_state_dict(last["model_state"])
        saver.optimizer.load_state_dict(last["optimizer_state"])
        hidden = restore_rank_state(last["rank_states"][distributed.rank()], device)
        state = RunState(**last["run"])
        finished = state.finished
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as err:
        # a damaged or tampered last.pt whose model fields are sound but whose saved run is not
        reason = str(err).splitlines()[0][:120] if str(err) else ""
        raise CharRNNError(
            f"{saver.last}: its saved run cannot be restored ({type(err).__name__}: {reason}): delete it, or set "
            "resume: false to train afresh"
        ) from None
    if finished:
        say(f"{saver.last} holds the finished run of these params, data and code: completing it, nothing to train")
    else:
        say(f"resuming from {saver.last} at step {state.step}")
    return state, hidden


def _resumable(saver, say):
    """The contents of last.pt if it holds a run of the same params, data and code (and best.pt is its
    run's); else None, and one line why."""
    last = saver.read(saver.last)
    if last is None:
        return None
    saved_run = last.get("run", {})
    if set(saved_run) != {f.name for f in fields(RunState)}:
        say(f"not resuming from {saver.last}: written by another version of charrnn; training afresh")
        return None
    state = RunState(**saved_run)
    changed = fingerprint_changes(last["fingerprint"], saver.fingerprint)
    if changed:
        what = "finished run" if state.finished else "unfinished run"
        at = "" if state.finished else f" (step {state.step} of {state.total_steps})"
        say(f"not resuming the {what} in {saver.last}{at}: changed since: {changed}; training afresh")
        return None
    best = saver.read(saver.best)
    if state.best_step and not (best and best.get("run_id") == state.run_id and best["step"] >= state.best_step):
        # best.pt may be one validation ahead (a kill between the two writes): the resumed run rewrites it
        say(f"not resuming from {saver.last}: {saver.best} is missing or from another run; training afresh")
        return None
    return last


def start(saver, total_steps, allow_resume, device, say):
    """(RunState, carried RNN state) to train from: the unfinished run in last.pt when `allow_resume`
    and resume() accepts it, else a new run from step 0 (no carried state)."""
    state, hidden = resume(saver, device, say) if allow_resume else (None, None)
    return state or RunState(run_id=uuid.uuid4().hex, total_steps=total_steps), hidden
