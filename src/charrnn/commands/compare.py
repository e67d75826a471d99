"""`charrnn compare`: two models write from the same prime and seed, and the texts are shown side by side."""

import itertools
import shutil
import textwrap

from charrnn.core.model import shape
from charrnn.errors import CharRNNError
from charrnn.generation.sample import generate

MIN_COLUMN = 40  # narrower columns than this: the two texts one after the other
GUTTER = " | "


def load(spec):
    """(model, vocab, heading) of a model URI or a checkpoint file (tracking.model_uris.load); the heading
    says which version it is, its val loss and size."""
    from charrnn.tracking.model_uris import load as load_model  # MLflow: imported when a command runs

    model, vocab, payload, label = load_model(spec)
    config = payload["model_config"]
    val = f"val {payload['val_loss']:.4f}" if "val_loss" in payload else "val loss unknown"
    size = f"{shape(config)}, {model.num_params():,} parameters"
    return model, vocab, f"{label}: {val}, {size}, step {payload.get('step', '?')}"


def compare(spec_a, spec_b, prime, length, seed, temperature, top_k, precision="auto", width=None):
    """The two models' texts from the same prime and seed at the same generation `precision`, laid out
    for a terminal `width` columns wide (default: this terminal's): two columns, or one text after the
    other if too narrow."""
    (model_a, vocab_a, head_a), (model_b, vocab_b, head_b) = load(spec_a), load(spec_b)
    if not vocab_a.same_text(vocab_b):
        raise CharRNNError(
            f"{spec_a} learned '{vocab_a.corpus}' and {spec_b} '{vocab_b.corpus}': "
            "models of different corpora are not compared"
        )
    texts = [
        generate(model, vocab_a, prime, length, temperature, top_k, seeds=[seed], precision=precision)[0]
        for model in (model_a, model_b)
    ]
    return layout([head_a, head_b], texts, width or shutil.get_terminal_size((100, 24)).columns)


def layout(headings, texts, width):
    """Two columns of `width` // 2 with their headings, or heading, text, heading, text."""
    column = (width - len(GUTTER)) // 2
    if column < MIN_COLUMN:
        return "\n\n".join(f"== {heading}\n{text}" for heading, text in zip(headings, texts))
    left, right = (
        [*_wrapped(f"== {heading}", column), "", *_wrapped(text, column)] for heading, text in zip(headings, texts)
    )
    return "\n".join(f"{a:<{column}}{GUTTER}{b}".rstrip() for a, b in itertools.zip_longest(left, right, fillvalue=""))


def _wrapped(text, column):
    """The lines of `text` cut to `column` characters, each line of the text on lines of its own."""
    return [
        piece
        for line in text.splitlines() or [""]
        for piece in textwrap.wrap(line, column, replace_whitespace=False, drop_whitespace=False) or [""]
    ]
