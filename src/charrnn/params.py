"""The params schema: every hyperparameter's type, allowed range and default, checked once, up front.

Stages and commands call `load()` and get a flat dict of validated plain values. Nested sections of
params.yaml (e.g. `sample: {length: ...}`) appear as dotted keys (`sample.length`).
"""

import difflib
import math
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from charrnn.atomic import atomic_path
from charrnn.errors import CharRNNError


@dataclass(frozen=True)
class Param:
    default: Any
    kind: type  # bool, int, float or str
    rule: str  # the allowed values in words, for error messages
    ok: Callable[[Any], bool] = lambda value: True
    nullable: bool = False  # null (None) is allowed and means "off"
    auto: bool = False  # the text 'auto' is allowed besides values of `kind`


CELL_TYPES = ("lstm", "gru", "rnn")
GENERATION_PRECISIONS = ("auto", "fp32", "bf16", "int8")  # sample.precision, --precision (charrnn.sampling_rules)


def _at_least(low):
    return lambda value: value >= low


# Seeds fit 32 bits, as the classic ones do: torch's generator and the sampler's per-stream counters
# take them without overflow (a seed beyond int64 was a traceback inside torch).
SEED_RULE = "an integer from 0 to 4294967295"


def _is_seed(value):
    return 0 <= value <= 2**32 - 1


def _one_of(*choices):
    return Param(choices[0], str, f"one of {', '.join(choices)}", lambda value: value in choices)


SCHEMA = {
    "corpus": Param(
        "anna", str,
        "a corpus name (`charrnn fetch --help` lists them) or a path to a UTF-8 text file",
        lambda value: value.strip() != "",
    ),
    "train_frac": Param(0.9, float, "a fraction in (0, 1]", lambda value: 0 < value <= 1),
    "val_frac": Param(0.05, float, "a fraction in (0, 1)", lambda value: 0 < value < 1),
    "test_frac": Param(0.05, float, "a fraction in [0, 1)", lambda value: 0 <= value < 1),
    # model
    "cell": _one_of(*CELL_TYPES),
    "lstm_size": Param(384, int, "an integer >= 1", _at_least(1)),
    "num_layers": Param(2, int, "an integer >= 1", _at_least(1)),
    "embedding_size": Param(0, int, "an integer >= 0 (0 = one-hot input)", _at_least(0)),
    "dropout": Param(0.1, float, "a number in [0, 1)", lambda value: 0 <= value < 1),
    # training
    "batch_size": Param(32, int, "an integer >= 1", _at_least(1)),
    "num_steps": Param(32, int, "an integer >= 1", _at_least(1)),
    "epochs": Param(2, int, "an integer >= 1", _at_least(1)),
    "learning_rate": Param(0.005, float, "a number > 0", lambda value: value > 0),
    "lr_schedule": _one_of("cosine", "constant"),
    "warmup_steps": Param(100, int, "an integer >= 0", _at_least(0)),
    "min_lr": Param(0.0001, float, "a number >= 0", _at_least(0)),
    "grad_clip": Param(5.0, float, "a number > 0", lambda value: value > 0),
    "seed": Param(1234, int, SEED_RULE, _is_seed),
    "eval_every": Param(200, int, "an integer >= 1", _at_least(1)),
    "keep_checkpoints": Param(1000, int, "an integer >= 0 (0 = off)", _at_least(0)),
    "resume": Param(True, bool, "true or false"),
    "device": _one_of("auto", "cpu", "cuda"),
    "processes": Param(1, int, "an integer >= 1 (data-parallel processes, e.g. one per GPU)", _at_least(1)),
    "precision": _one_of("auto", "bf16", "fp32"),
    "threads": Param("auto", int, "auto or an integer >= 1 (CPU threads per process)", _at_least(1), auto=True),
    # sample stage
    "sample.prime": Param("Far", str, "a non-empty text", lambda value: value != ""),
    "sample.length": Param(2000, int, "an integer >= 0", _at_least(0)),
    "sample.temperature": Param(1.0, float, "a number >= 0 (0 = greedy)", _at_least(0)),
    "sample.top_k": Param(5, int, "an integer from 1 to the vocabulary size, or null for off", _at_least(1),
                          nullable=True),
    "sample.top_p": Param(1.0, float, "a number in (0, 1] (1 = off)", lambda value: 0 < value <= 1),
    "sample.seed": Param(1234, int, SEED_RULE, _is_seed),
    "sample.num_samples": Param(1, int, "an integer >= 1", _at_least(1)),
    "sample.drop_unknown": Param(False, bool, "true or false"),
    "sample.precision": _one_of(*GENERATION_PRECISIONS),
    # MLflow
    "tracking.experiment": Param("", str, "an MLflow experiment name ('' = charrnn-<corpus>)"),
}


def defaults():
    """The default value of every param, as a flat dict."""
    return {name: param.default for name, param in SCHEMA.items()}


def changed(values):
    """{name: value} of the params in `values` that differ from their defaults, in the schema's order,
    compared as text (so also for the params of an MLflow run)."""
    return {name: values[name] for name, param in SCHEMA.items()
            if name in values and str(values[name]) != str(param.default)}


def load(path="params.yaml"):
    """Read, flatten and validate a params file."""
    path = Path(path)
    if not path.is_file():
        raise CharRNNError(f"{path}: file not found (run from the project root, where params.yaml is)")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise CharRNNError(f"{path}: {path.stat().st_size:,} bytes; a params file is a few KB (at most {MAX_FILE_BYTES:,})")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise CharRNNError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise CharRNNError(f"{path}: expected a mapping of param names to values")
    try:
        return validate(_flatten(raw), source=str(path))
    except CharRNNError as err:
        undone = _undo_refused_experiment_values(path, _flatten(raw))
        raise CharRNNError(f"{err}{undone}") from None


def _undo_refused_experiment_values(path, values):
    """Under `dvc exp run` in the workspace DVC writes the -S values into params.yaml before the stages
    run, and leaves them there when one fails: put each refused value back as the experiment's baseline
    commit has it (its line, comment and all), so that a refused value never stays. Returns the words
    that say so, or ''."""
    root, baseline = os.environ.get("DVC_ROOT"), os.environ.get("DVC_EXP_BASELINE_REV")
    if not (root and baseline and os.environ.get("DVC_EXP_NAME")) or path.resolve() != Path(root, "params.yaml").resolve():
        return ""  # not a workspace experiment (a queued one runs in a copy DVC throws away)
    try:
        shown = subprocess.run(["git", "show", f"{baseline}:params.yaml"], cwd=root, capture_output=True, text=True)
    except OSError:  # no git here
        return ""
    if shown.returncode != 0:
        return ""
    base_lines, lines = shown.stdout.splitlines(keepends=True), path.read_text(encoding="utf-8").splitlines(keepends=True)
    base_at, at = _key_lines(base_lines), _key_lines(lines)
    undone = []
    for name in SCHEMA:
        if name in values and name in at and name in base_at and not _valid(name, values[name]):
            lines[at[name]] = base_lines[base_at[name]]
            undone.append(name)
    if not undone:
        return ""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")
    return f"; params.yaml has {', '.join(undone)} back as in the experiment's baseline (dvc exp run -S had set it)"


def _valid(name, value):
    try:
        check_value(name, value)
        return True
    except CharRNNError:
        return False


def _key_lines(lines):
    """{param name: line index} of the `key: value` lines of a params file (a section's keys as
    section.key, one level deep as params.yaml nests them)."""
    found, section = {}, None
    for index, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z_]\w*)\s*:(.*)$", line.rstrip("\n"))
        if match is None:
            continue
        indent, key, rest = match.groups()
        if not indent:
            section = key if rest.split("#")[0].strip() == "" else None
            found[key] = index
        elif section:
            found[f"{section}.{key}"] = index
    return found


MAX_FILE_BYTES = 1_000_000


class _NoAliasLoader(yaml.SafeLoader):
    """safe_load's loader without aliases: a few lines of nested aliases expand to gigabytes ("billion
    laughs"), and params never need them."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"an alias (*) at line {mark.line + 1}: anchors and aliases are not allowed here")
        return super().compose_node(parent, index)


def validate(raw, source="params"):
    """Check names, types, ranges and cross-field rules; return a new dict of clean values."""
    unknown = sorted(set(raw) - set(SCHEMA))
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, SCHEMA, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise CharRNNError(f"{source}: unknown param '{name}'{hint}")
    missing = [name for name in SCHEMA if name not in raw]
    if missing:
        name = missing[0]
        raise CharRNNError(f"{source}: missing param '{name}' (add e.g. `{name}: {SCHEMA[name].default}`)")

    clean = {name: check_value(name, raw[name], source) for name in SCHEMA}

    total = clean["train_frac"] + clean["val_frac"] + clean["test_frac"]
    if total > 1 + 1e-9:
        raise CharRNNError(
            f"{source}: train_frac + val_frac + test_frac must be at most 1 (got {total:g})"
        )
    if clean["min_lr"] > clean["learning_rate"]:
        raise CharRNNError(f"{source}: min_lr ({clean['min_lr']:g}) must not exceed learning_rate")
    return clean


def with_overrides(values, pairs, source="--set"):
    """Validated `values` with KEY=VALUE `pairs` (a value as YAML reads it, as `dvc exp run -S` writes it)
    in place of theirs: what `dvc exp run -S ...` would run, for the commands that size a variant."""
    changed = dict(values)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CharRNNError(f"{source} takes KEY=VALUE (got {pair!r})")
        try:
            changed[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            changed[key] = value
    return validate(changed, source)


def check_value(name, value, source="params"):
    """The value of the param `name` as its type, or a CharRNNError naming its rule."""
    param = SCHEMA[name]
    if value is None and param.nullable:
        return None
    if value == "auto" and param.auto:
        return value
    converted = _convert(value, param.kind)
    if converted is None or not param.ok(converted):
        raise CharRNNError(f"{source}: {name} must be {param.rule} (got {value!r})")
    return converted


def _convert(value, kind):
    """`value` as `kind`, or None when it is not of that type. Booleans are never numbers."""
    if isinstance(value, bool):
        return value if kind is bool else None
    if kind is int:
        return value if isinstance(value, int) else None
    if kind is float:
        if isinstance(value, str):
            # PyYAML reads `1e-3` (no dot) as a string; DVC's `-S learning_rate=1e-3` writes that.
            try:
                value = float(value)
            except ValueError:
                return None
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
        return None
    if kind is str:
        return value if isinstance(value, str) else None
    return None


def _flatten(raw, prefix=""):
    flat = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat
