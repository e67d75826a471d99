"""The params schema: every hyperparameter's type, allowed range and default, checked once, up front.

Stages and commands call `load()` and get the typed view, `Params`: each param an attribute
(`p.lstm_size`), each section of params.yaml a nested one (`p.sample.length`). The schema, `SCHEMA`,
names them by dotted name (`sample.length`) with their rules, read from the typed view's fields.
"""

import difflib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

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
GENERATION_PRECISIONS = ("auto", "fp32", "bf16", "int8")  # sample.precision, --precision (charrnn.generation.rules)


def _at_least(low):
    return lambda value: value >= low


# Seeds fit 32 bits, as the classic ones do: torch's generator and the sampler's per-stream counters
# take them without overflow (a seed beyond int64 was a traceback inside torch).
SEED_RULE = "an integer from 0 to 4294967295"


def _is_seed(value):
    return 0 <= value <= 2**32 - 1


def _one_of(*choices):
    return Param(choices[0], str, f"one of {', '.join(choices)}", lambda value: value in choices)


def _param(param):
    """A field of the typed view whose value params.yaml gives and `param` checks."""
    return field(default=param.default, metadata={"param": param})


class _Section:
    """What the typed view and its sections share: their values by dotted name."""

    def flat(self, skip=()):
        """{dotted name: value} in params.yaml's order (a section's keys as section.key), less the
        sections named in `skip`: params as MLflow logs them and as the schema names them."""
        values = {}
        for name, spec in self.__dataclass_fields__.items():
            if name in skip:
                continue
            value = getattr(self, name)
            if "param" in spec.metadata:
                values[name] = value
            else:
                values.update({f"{name}.{key}": inner for key, inner in value.flat().items()})
        return values


@dataclass(frozen=True)
class Sample(_Section):
    """params.yaml's `sample:` section: the sample stage's text."""

    prime: str = _param(Param("Far", str, "a non-empty text", lambda value: value != ""))
    length: int = _param(Param(2000, int, "an integer >= 0", _at_least(0)))
    temperature: float = _param(Param(1.0, float, "a finite number >= 0 (0 = greedy)", _at_least(0)))
    top_k: int | None = _param(
        Param(5, int, "an integer from 1 to the vocabulary size, or null for off", _at_least(1), nullable=True)
    )
    top_p: float = _param(Param(1.0, float, "a number in (0, 1] (1 = off)", lambda value: 0 < value <= 1))
    seed: int = _param(Param(1234, int, SEED_RULE, _is_seed))
    num_samples: int = _param(Param(1, int, "an integer >= 1", _at_least(1)))
    drop_unknown: bool = _param(Param(False, bool, "true or false"))
    precision: str = _param(_one_of(*GENERATION_PRECISIONS))


@dataclass(frozen=True)
class Tracking(_Section):
    """params.yaml's `tracking:` section: where the MLflow runs go."""

    experiment: str = _param(Param("", str, "an MLflow experiment name ('' = charrnn-<corpus>)"))


@dataclass(frozen=True)
class Params(_Section):
    """params.yaml, validated: each param an attribute (`p.lstm_size`, `p.sample.top_k`), at top level
    under the classic names as `dvc exp run -S lstm_size=1024` writes them."""

    corpus: str = _param(
        Param(
            "anna",
            str,
            "a corpus name (`charrnn fetch --help` lists them) or a path to a UTF-8 text file",
            lambda value: value.strip() != "",
        )
    )
    train_frac: float = _param(Param(0.9, float, "a fraction in (0, 1]", lambda value: 0 < value <= 1))
    val_frac: float = _param(Param(0.05, float, "a fraction in (0, 1)", lambda value: 0 < value < 1))
    test_frac: float = _param(Param(0.05, float, "a fraction in [0, 1)", lambda value: 0 <= value < 1))
    # model
    cell: str = _param(_one_of(*CELL_TYPES))
    lstm_size: int = _param(Param(384, int, "an integer >= 1", _at_least(1)))
    num_layers: int = _param(Param(2, int, "an integer >= 1", _at_least(1)))
    embedding_size: int = _param(Param(0, int, "an integer >= 0 (0 = one-hot input)", _at_least(0)))
    dropout: float = _param(Param(0.1, float, "a number in [0, 1)", lambda value: 0 <= value < 1))
    # training
    batch_size: int = _param(Param(32, int, "an integer >= 1", _at_least(1)))
    num_steps: int = _param(Param(32, int, "an integer >= 1", _at_least(1)))
    epochs: int = _param(Param(2, int, "an integer >= 1", _at_least(1)))
    learning_rate: float = _param(Param(0.005, float, "a finite number > 0", lambda value: value > 0))
    lr_schedule: str = _param(_one_of("cosine", "constant"))
    warmup_steps: int = _param(Param(100, int, "an integer >= 0", _at_least(0)))
    min_lr: float = _param(Param(0.0001, float, "a finite number >= 0", _at_least(0)))
    grad_clip: float = _param(Param(5.0, float, "a finite number > 0", lambda value: value > 0))
    seed: int = _param(Param(1234, int, SEED_RULE, _is_seed))
    eval_every: int = _param(Param(200, int, "an integer >= 1", _at_least(1)))
    keep_checkpoints: int = _param(Param(1000, int, "an integer >= 0 (0 = off)", _at_least(0)))
    resume: bool = _param(Param(True, bool, "true or false"))
    device: str = _param(_one_of("auto", "cpu", "cuda"))
    processes: int = _param(Param(1, int, "an integer >= 1 (data-parallel processes, e.g. one per GPU)", _at_least(1)))
    precision: str = _param(_one_of("auto", "bf16", "fp32"))
    threads: int | str = _param(
        Param("auto", int, "auto or an integer >= 1 (CPU threads per process)", _at_least(1), auto=True)
    )
    sample: Sample = field(default_factory=Sample)
    tracking: Tracking = field(default_factory=Tracking)

    def model_config(self):
        """The model's shape as core.model.CharRNN takes it (less the vocabulary size)."""
        return dict(
            cell=self.cell,
            lstm_size=self.lstm_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            embedding_size=self.embedding_size,
        )


def _schema(cls, prefix=""):
    """{dotted name: Param} of a typed view's fields, sections included, in their order."""
    schema = {}
    for spec in fields(cls):
        if "param" in spec.metadata:
            schema[prefix + spec.name] = spec.metadata["param"]
        else:
            schema.update(_schema(spec.type, f"{prefix}{spec.name}."))
    return schema


def _typed(clean, cls=Params, prefix=""):
    """The typed view of a flat dict of clean values."""
    return cls(
        **{
            spec.name: clean[prefix + spec.name]
            if "param" in spec.metadata
            else _typed(clean, spec.type, f"{prefix}{spec.name}.")
            for spec in fields(cls)
        }
    )


SCHEMA = _schema(Params)  # every param by its dotted name: what validate() checks


def defaults():
    """The default value of every param, as a flat dict."""
    return {name: param.default for name, param in SCHEMA.items()}


def nested(values):
    """{dotted name: value} as params.yaml nests them: {'sample.length': 5} is {'sample': {'length': 5}}."""
    tree = {}
    for name, value in values.items():
        *sections, key = name.split(".")
        target = tree
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    return tree


def changed(values):
    """{name: value} of the params in `values` that differ from their defaults, in the schema's order,
    compared as text (so also for the params of an MLflow run)."""
    return {
        name: values[name]
        for name, param in SCHEMA.items()
        if name in values and str(values[name]) != str(param.default)
    }


def load(path="params.yaml"):
    """Read, flatten and validate a params file."""
    path = Path(path)
    if not path.is_file():
        raise CharRNNError(f"{path}: file not found (run from the project root, where params.yaml is)")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise CharRNNError(
            f"{path}: {path.stat().st_size:,} bytes; a params file is a few KB (at most {MAX_FILE_BYTES:,})"
        )
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise CharRNNError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise CharRNNError(f"{path}: expected a mapping of param names to values")
    return validate(_flatten(raw), source=str(path))


MAX_FILE_BYTES = 1_000_000


class _Yaml12Loader(yaml.SafeLoader):
    """safe_load's loader reading plain values by YAML 1.2's core rules, as DVC (ruamel) reads and writes
    params.yaml: PyYAML's YAML 1.1 took `yes`, `no`, `on`, `off` for booleans, `1:30` for 90 (base 60) and
    `010` for 8, where DVC records the texts `yes` and `1:30` and the number 10, so a run would use
    another value than dvc.lock says. It also refuses aliases: a few lines of nested aliases expand to
    gigabytes ("billion laughs"), and params never need them."""

    yaml_implicit_resolvers = {}

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.YAMLError(f"an alias (*) at line {mark.line + 1}: anchors and aliases are not allowed here")
        return super().compose_node(parent, index)


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9][0-9_]*|0b[01_]+|0o[0-7_]+|0x[0-9a-fA-F_]+)$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
):
    _Yaml12Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))
_Yaml12Loader.add_constructor(  # 010 is ten, as in YAML 1.2 (PyYAML's 1.1: eight); 0o10 and 0x8 are eight
    "tag:yaml.org,2002:int",
    lambda loader, node: int(node.value.replace("_", ""), 0 if node.value[:2] in ("0b", "0o", "0x") else 10),
)


def read_yaml(text):
    """YAML text as DVC reads it (see _Yaml12Loader)."""
    return yaml.load(text, Loader=_Yaml12Loader)


def validate(raw, source="params"):
    """Check the names, types, ranges and cross-field rules of a flat dict of values; return the typed view."""
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

    p = _typed({name: check_value(name, raw[name], source) for name in SCHEMA})
    total = p.train_frac + p.val_frac + p.test_frac
    if total > 1 + 1e-9:
        raise CharRNNError(f"{source}: train_frac + val_frac + test_frac must be at most 1 (got {total:g})")
    if p.min_lr > p.learning_rate:
        raise CharRNNError(f"{source}: min_lr ({p.min_lr:g}) must not exceed learning_rate")
    return p


def with_overrides(values, pairs, source="--set"):
    """Validated `values` with KEY=VALUE `pairs` (a value as YAML reads it, as `dvc exp run -S` writes it)
    in place of theirs: what `dvc exp run -S ...` would run, for the commands that size a variant."""
    changed = values.flat()
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CharRNNError(f"{source} takes KEY=VALUE (got {pair!r})")
        try:
            changed[key] = read_yaml(value)
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
