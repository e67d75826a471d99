"""One checkpoint format: a dict of tensors and plain values, written atomically, read with weights_only.

Every checkpoint holds the model's config, weights and vocabulary, so it alone is enough to sample.
`last.pt` adds what resuming needs: optimizer, RNG state, carried RNN state and the history so far.
"""

import pickle
import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path

import torch

from charrnn import distributed
from charrnn.atomic import atomic_path
from charrnn.errors import CharRNNError
from charrnn.model import CharRNN, map_state
from charrnn.vocab import Vocab

FORMAT = "charrnn-checkpoint/1"


def model_payload(model, vocab, **extra):
    """The part every checkpoint shares: config, weights (on the CPU) and vocabulary."""
    return {
        "format": FORMAT,
        "model_config": dict(model.config),
        "model_state": {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()},
        "vocab": {"chars": list(vocab.chars), "corpus": vocab.corpus, "sha256": vocab.sha256},
        **extra,
    }


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
        return self.keep_every > 0 and step % self.keep_every == 0

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
            save(self.kept / f"i{row['step']}_l{lstm_size}_v{row['val_loss']:.4f}.pt", self._payload(row))
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
            raise CharRNNError(f"{err}: restore it (`dvc checkout {path}`), or delete it or set resume: false "
                               "to train afresh") from None

    def open_folder(self, fresh):
        """Make the folder ready: a fresh run starts without the kept copies of an earlier one, and
        checkpoints/ exists even when none are kept (DVC expects every out)."""
        if fresh:
            shutil.rmtree(self.kept, ignore_errors=True)
        self.kept.mkdir(parents=True, exist_ok=True)

    def _save_last(self, row, state, rank_states):
        """best.pt and last.pt carry the run's id: a resume accepts only its own run's best.pt."""
        save(self.last, self._payload(row, optimizer_state=self.optimizer.state_dict(), rank_states=rank_states,
                                      fingerprint=self.fingerprint, run=asdict(state)))

    def _payload(self, row, **extra):
        return model_payload(self.model, self.vocab, **row, **extra)


def rank_state(hidden):
    """What one rank must keep to continue exactly: its carried RNN state and its RNG states."""
    return dict(hidden=map_state(hidden, torch.Tensor.cpu), rng=torch.get_rng_state(),
                cuda_rng=torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None)


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


def save(path, payload):
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(path):
    """Read a checkpoint safely (no pickled code runs); a missing, corrupt or foreign file is a CharRNNError."""
    path = Path(path)
    if not path.is_file():
        raise CharRNNError(f"checkpoint {path} not found (train first: dvc repro train)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as err:
        raise CharRNNError(f"{path} is not a readable checkpoint ({_why_unreadable(err)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CharRNNError(f"{path} is not a charrnn checkpoint")
    return payload


def _why_unreadable(err):
    """torch's reason in a few words: its weights_only messages open with paragraphs of advice."""
    text = str(err).strip()
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        if detail.startswith("Unsupported global:"):  # e.g. "Unsupported global: GLOBAL os.system was not ..."
            name = detail.split(":", 1)[1].split(" was ")[0].replace("GLOBAL", "").strip()
            return f"it holds pickled Python objects ({name}), which are never loaded"
        return f"corrupt or not a torch file: {detail[:120]}"
    return f"corrupt or truncated: {(text.splitlines()[0] if text else type(err).__name__)[:160]}"


def load_model(path):
    """(model in eval mode on the CPU, vocab) from a checkpoint file."""
    payload = load(path)
    vocab = Vocab(chars=tuple(payload["vocab"]["chars"]), corpus=payload["vocab"]["corpus"],
                  sha256=payload["vocab"]["sha256"])
    config = payload["model_config"]
    if config.get("vocab_size") != len(vocab):
        raise CharRNNError(f"{path}: model expects {config.get('vocab_size')} characters, vocabulary has {len(vocab)}")
    try:
        model = CharRNN(**config)
        model.load_state_dict(payload["model_state"])
    except (TypeError, KeyError, RuntimeError) as err:
        raise CharRNNError(f"{path}: weights do not fit the model config ({str(err).splitlines()[0][:160]})") from None
    return model.eval(), vocab
