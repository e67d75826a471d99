"""The MLflow pyfunc model: a DataFrame of prompts in, one generated text per row out.

served_model.py (the "model from code" file MLflow runs on load) instantiates it; the log_models
stage logs it with each checkpoint as an artifact (charrnn/tracking/logged_models.py).
"""

import math
import traceback

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, RESOURCE_EXHAUSTED
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from charrnn.errors import CharRNNError
from charrnn.generation.sample import generate
from charrnn.params import SCHEMA, check_value
from charrnn.serving.turns import Busy, Turns
from charrnn.training import checkpoint

# What one request may cost at most (HTTP 400 beyond): rows, characters of a prime, characters to write
# in a row and in the whole request. About 10 s of one CPU core for the default 2x512 model.
MAX_ROWS = 64
MAX_PRIME = 10_000
MAX_LENGTH = 10_000
MAX_TOTAL_LENGTH = 20_000
DEFAULTS = {"length": 200, "temperature": 1.0, "top_k": 5, "seed": 0}  # of a column a request leaves out
DEFAULT_PRECISION = SCHEMA["sample.precision"].default  # auto, as the sample stage and the CLI


class CharRNNModel(mlflow.pyfunc.PythonModel):
    """The pyfunc flavour: a DataFrame with `prime` (and optional `length`, `temperature`, `top_k`,
    `seed`) in, one generated text per row out; the param `precision` (as sample.precision, default
    auto) is the generation steps' precision. Each value must be what params.yaml's `sample.*` accepts
    (the same rules as the CLI's flags); a column given must have a value in every row (null is off
    for top_k alone); a request stays within MAX_ROWS, MAX_PRIME, MAX_LENGTH and MAX_TOTAL_LENGTH."""

    def load_context(self, context):
        self.model, self.vocab = checkpoint.load_model(context.artifacts["checkpoint"])
        self.turns = Turns()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        """Bad input raises MlflowException(INVALID_PARAMETER_VALUE): a served model answers 400 with
        the message, not 500; a large request while MAX_LARGE are in flight, 429 (turns.py). Any other
        failure is a 500 whose body names no code or path (the traceback goes to the server's log)."""
        precision = str((params or {}).get("precision") or DEFAULT_PRECISION)
        try:
            rows = checked_rows(model_input)
            with self.turns.request(sum(len(row["prime"]) + row["length"] for row in rows)) as request:
                return [generate(self.model, self.vocab, row["prime"], row["length"], temperature=row["temperature"],
                                 top_k=row["top_k"], seeds=[row["seed"]], precision=precision,
                                 on_step=request.step)[0] for row in rows]
        except Busy as err:
            raise MlflowException(str(err), error_code=RESOURCE_EXHAUSTED) from None
        except CharRNNError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        except Exception:
            traceback.print_exc()
            raise MlflowException("the model failed to answer this request (the server's log has the details)",
                                  error_code=INTERNAL_ERROR) from None


def checked_rows(model_input):
    """The request's rows as {prime, length, temperature, top_k, seed} of checked plain values."""
    if "prime" not in getattr(model_input, "columns", ()):
        raise CharRNNError("the input needs a 'prime' column")
    records = model_input.to_dict("records")
    if not 1 <= len(records) <= MAX_ROWS:
        raise CharRNNError(f"a request has 1 to {MAX_ROWS} rows (got {len(records)})")
    rows = [{name: _checked(number, name, record.get(name, DEFAULTS.get(name))) for name in ("prime", *DEFAULTS)}
            for number, record in enumerate(records, 1)]
    for number, row in enumerate(rows, 1):
        if len(row["prime"]) > MAX_PRIME:
            raise CharRNNError(f"row {number}: the prime has {len(row['prime']):,} characters, over the limit of "
                               f"{MAX_PRIME:,} per prime")
        if row["length"] > MAX_LENGTH:
            raise CharRNNError(f"row {number}: length {row['length']:,} is over the limit of {MAX_LENGTH:,} "
                               "characters per row")
    total = sum(row["length"] for row in rows)
    if total > MAX_TOTAL_LENGTH:
        raise CharRNNError(f"the rows ask for {total:,} characters in all, over the limit of {MAX_TOTAL_LENGTH:,} "
                           "per request")
    return rows


def _checked(number, name, value):
    """`value` of the column `name` in row `number` by params.yaml's rule for sample.<name>."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # a numpy scalar of the DataFrame
    if name == "top_k" and isinstance(value, float) and math.isnan(value):
        value = None  # null in a numeric column: off, as in params.yaml
    if SCHEMA[f"sample.{name}"].kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # a whole number in a column that a null made float; 1.5 stays refused
    try:
        return check_value(f"sample.{name}", value, "request")
    except CharRNNError:
        raise CharRNNError(f"row {number}: {name} must be {SCHEMA[f'sample.{name}'].rule} (got {value!r})") from None


SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "prime"), ColSpec("long", "length", required=False),
                   ColSpec("double", "temperature", required=False), ColSpec("long", "top_k", required=False),
                   ColSpec("long", "seed", required=False)]),
    outputs=Schema([ColSpec("string")]),
    params=ParamSchema([ParamSpec("precision", "string", DEFAULT_PRECISION)]),
)


