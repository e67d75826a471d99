"""The checkpoint file format: a dict of tensors and plain values, written atomically, read with
weights_only (no pickled code ever runs).

Every checkpoint holds the model's config, weights and vocabulary, so it alone is enough to sample;
what a training run adds to it (last.pt's resume state) is the run's business: training/run.py.
"""

import pickle
import zipfile
from pathlib import Path

import torch

from charrnn.atomic import atomic_path
from charrnn.core.model import CELLS, CharRNN
from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError, disk_full

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


def save(path, payload):
    """Write a checkpoint payload atomically; a failed write leaves the earlier file as it was."""
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except RuntimeError as err:
        if "unexpected pos" in str(err):  # torch's zip writer reports a full disk so, as a short write
            raise CharRNNError(disk_full(path)) from None
        raise


def load(path):
    """Read a checkpoint safely (no pickled code runs); a missing, corrupt or foreign file is a CharRNNError."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise CharRNNError(
            f"checkpoint {path} is {'a folder' if path.is_dir() else 'not a regular file'}, not a checkpoint file"
        )
    if not path.is_file():
        raise CharRNNError(f"checkpoint {path} not found (train first: dvc repro train)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as err:
        raise CharRNNError(f"{path} is not a readable checkpoint ({_why_unreadable(err)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CharRNNError(f"{path} is not a charrnn checkpoint")
    problem = _malformed(payload)
    if problem:
        raise CharRNNError(f"{path} is not a usable checkpoint: {problem}")
    return payload


def _malformed(payload):
    """What is wrong with the fields every reader of a checkpoint uses ('' if nothing): a tampered or
    damaged file is refused here, in words, rather than fail as a KeyError or IndexError in whichever
    reader meets the field first."""
    vocab, config, weights = payload.get("vocab"), payload.get("model_config"), payload.get("model_state")
    if not isinstance(vocab, dict) or not all(isinstance(vocab.get(key), str) for key in ("corpus", "sha256")):
        return "its vocab is missing or malformed"
    chars = vocab.get("chars")
    if not isinstance(chars, list) or not chars:
        return "its vocabulary has no characters"
    odd = next((char for char in chars if not isinstance(char, str) or len(char) != 1), None)
    if odd is not None or len(set(chars)) != len(chars):
        entry = f"the entry {str(odd)[:20]!r}" if odd is not None else "a character twice"
        return f"its vocabulary holds {entry}: each entry is one distinct character"
    if (
        not isinstance(config, dict)
        or any(not _whole(config.get(key), 0) for key in CONFIG_WHOLE)
        or not isinstance(config.get("cell"), str)
        or config["cell"] not in CELLS
        or not isinstance(config.get("dropout"), (int, float))
    ):
        return "its model_config is missing or malformed"
    if not isinstance(weights, dict) or not all(
        isinstance(name, str) and isinstance(tensor, torch.Tensor) for name, tensor in weights.items()
    ):
        return "its model_state is missing or not a set of named tensors"
    if "step" in payload and not _whole(payload["step"], 0):
        return f"its step is {str(payload['step'])[:20]!r}, not a whole number"
    for key in ("val_loss", "train_loss"):
        if key in payload and not (isinstance(payload[key], (int, float)) and not isinstance(payload[key], bool)):
            return f"its {key} is {str(payload[key])[:20]!r}, not a number"
    if "run_id" in payload and not isinstance(payload["run_id"], str):
        return "its run_id is not a text"
    return ""


CONFIG_WHOLE = ("vocab_size", "lstm_size", "num_layers", "embedding_size")  # model_config's whole numbers


def _whole(value, low):
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def run_checkpoints(folder, say=print):
    """{path: payload} of the kept checkpoints in `folder`/checkpoints that are of best.pt's training run,
    then best.pt itself: what the later stages adopt. A kept file of another run (another run id, or
    without ids another vocabulary or model) is left out, with a line that says so."""
    best_path = Path(folder) / "best.pt"
    best = load(best_path)
    found = {}
    for path in sorted((Path(folder) / "checkpoints").glob("*.pt")):
        payload = load(path)
        if _same_run(payload, best):
            found[path] = payload
        else:
            say(f"leaving out {path}: a checkpoint of another training run than {best_path}")
    found[best_path] = best
    return found


def _same_run(payload, best):
    if payload.get("run_id") and best.get("run_id"):
        return payload["run_id"] == best["run_id"]
    return (payload.get("vocab"), payload.get("model_config")) == (best.get("vocab"), best.get("model_config"))


def _why_unreadable(err):
    """torch's reason in a few words: its weights_only messages open with paragraphs of advice."""
    text = str(err).strip()
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        if detail.startswith("Unsupported global:"):  # e.g. "Unsupported global: GLOBAL os.system was not ..."
            name = detail.split(":", 1)[1].split(" was ")[0].replace("GLOBAL", "").strip()
            return f"it holds pickled Python objects ({name}), which are never loaded"
        return f"corrupt or not a torch file: {_shortened(detail, 120)}"
    return f"corrupt or truncated: {_shortened(text.splitlines()[0] if text else type(err).__name__, 160)}"


def _shortened(text, most):
    """`text` in at most about `most` characters, cut between words."""
    return text if len(text) <= most else text[:most].rsplit(" ", 1)[0] + " ..."


def load_model(path):
    """(model in eval mode on the CPU, vocab) from a checkpoint file. The config is checked against
    the stored weights on the meta device (nothing allocated) before the model is built: a small file
    claiming a huge model is refused, not built."""
    payload = load(path)  # its fields checked
    vocab = Vocab(
        chars=tuple(payload["vocab"]["chars"]), corpus=payload["vocab"]["corpus"], sha256=payload["vocab"]["sha256"]
    )
    config, weights = dict(payload["model_config"]), dict(payload["model_state"])
    if config.get("vocab_size") != len(vocab):
        raise CharRNNError(f"{path}: model expects {config.get('vocab_size')} characters, vocabulary has {len(vocab)}")
    layers = sum(name.startswith("rnn.weight_ih_l") for name in weights)
    head = weights.get("head.weight")
    if layers != config["num_layers"] or head is None or tuple(head.shape) != (len(vocab), config["lstm_size"]):
        # before the model is built even on the meta device: a config of 10**20 layers would never end
        raise CharRNNError(
            f"{path}: weights do not fit the model config {config} (they hold {layers} layers"
            f"{f' and a head of {tuple(head.shape)}' if head is not None else ', no head'})"
        )
    try:
        with torch.device("meta"):
            expected = {name: tensor.shape for name, tensor in CharRNN(**config).state_dict().items()}
        stored = {name: getattr(tensor, "shape", None) for name, tensor in weights.items()}
        if expected != stored:
            wrong = sorted(name for name in expected.keys() | stored.keys() if expected.get(name) != stored.get(name))
            raise CharRNNError(f"{path}: weights do not fit the model config {config} (differ: {', '.join(wrong[:4])})")
        model = CharRNN(**config)
        model.load_state_dict(weights)
    except (TypeError, KeyError, RuntimeError, ValueError) as err:
        raise CharRNNError(f"{path}: weights do not fit the model config ({str(err).splitlines()[0][:160]})") from None
    return model.eval(), vocab
