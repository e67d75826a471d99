"""The MLflow pyfunc model: a DataFrame of prompts in, one generated text per row out.

served_model.py (the "model from code" file MLflow runs on load) instantiates it; the log_models
stage logs it with each checkpoint as an artifact (charrnn/tracking/logged_models.py).
"""

import traceback

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE, RESOURCE_EXHAUSTED
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from charrnn.core import checkpoint
from charrnn.errors import CharRNNError
from charrnn.generation.sample import generate
from charrnn.params import SCHEMA
from charrnn.serving.request_rules import OPTIONS, check_bounds, check_count, checked_option, default_top_k
from charrnn.serving.turns import Busy, Turns

DEFAULT_PRECISION = SCHEMA["sample.precision"].default  # auto, as the sample stage and the CLI


class CharRNNModel(mlflow.pyfunc.PythonModel):
    """The pyfunc flavour: a DataFrame with `prime` (and optional `length`, `temperature`, `top_k`,
    `top_p`, `seed`) in, one generated text per row out; the param `precision` (as sample.precision, default
    auto) is the generation steps' precision. Each value must be what params.yaml's `sample.*` accepts
    (the same rules as the CLI's flags); a column given must have a value in every row (null is off
    for top_k alone); another column is refused; a request stays within request_rules' bounds.

    These rules are the one schema of the columns: the signature declares none (SIGNATURE), since
    MLflow enforcing one converted and dropped values before predict saw them (a length of 2.5 became
    2, true became 1, an unknown column vanished, a null top_k was refused)."""

    def load_context(self, context):
        self.model, self.vocab = checkpoint.load_model(context.artifacts["checkpoint"])
        self.turns = Turns()

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        """Bad input raises MlflowException(INVALID_PARAMETER_VALUE): a served model answers 400 with
        the message, not 500; a large request while MAX_LARGE are in flight, 429 (turns.py). Any other
        failure is a 500 whose body names no code or path (the traceback goes to the server's log)."""
        precision = str((params or {}).get("precision") or DEFAULT_PRECISION)
        try:
            rows = checked_rows(model_input, len(self.vocab))
            with self.turns.request(sum(len(row["prime"]) + row["length"] for row in rows)) as request:
                return [
                    generate(
                        self.model,
                        self.vocab,
                        row["prime"],
                        row["length"],
                        temperature=row["temperature"],
                        top_k=row["top_k"],
                        top_p=row["top_p"],
                        seeds=[row["seed"]],
                        precision=precision,
                        on_step=request.step,
                    )[0]
                    for row in rows
                ]
        except Busy as err:
            raise MlflowException(str(err), error_code=RESOURCE_EXHAUSTED) from None
        except CharRNNError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
        except Exception:
            traceback.print_exc()
            raise MlflowException(
                "the model failed to answer this request (the server's log has the details)", error_code=INTERNAL_ERROR
            ) from None


def checked_rows(model_input, vocab_size):
    """The request's rows as {prime, length, temperature, top_k, top_p, seed} of checked plain values. A
    row without top_k gets the default, at most the vocabulary's size."""
    table = _table(model_input)
    unknown = [str(name) for name in table.columns if name not in ("prime", *OPTIONS)]
    if unknown:
        raise CharRNNError(
            f"unknown column {unknown[0][:40]!r}: the columns are prime, {', '.join(OPTIONS)} (params go in 'params')"
        )
    if "prime" not in table.columns:
        raise CharRNNError("the input needs a 'prime' column")
    records = table.to_dict("records")
    check_count(len(records))
    defaults = {**OPTIONS, "top_k": default_top_k(vocab_size)}
    rows = [
        {
            name: checked_option(name, record.get(name, defaults.get(name)), f"row {number}: ")
            for name in ("prime", *OPTIONS)
        }
        for number, record in enumerate(records, 1)
    ]
    check_bounds(rows)
    return rows


def _table(model_input):
    """The input as a DataFrame: one already, or the columns (a dict) or records (a list of dicts) that
    the scoring server's `inputs` and `instances` give without a schema."""
    if isinstance(model_input, pd.DataFrame):
        return model_input
    try:
        if isinstance(model_input, dict):
            columns = {key: value if isinstance(value, list) else [value] for key, value in model_input.items()}
            return pd.DataFrame(columns)
        if isinstance(model_input, list) and all(isinstance(record, dict) for record in model_input):
            return pd.DataFrame(model_input)
    except ValueError as err:  # columns of different lengths
        raise CharRNNError(f"the input is not a table ({err})") from None
    raise CharRNNError("the input is a table of prompts: a 'prime' column and the optional ones, a row per text")


# No input schema: checked_rows is the columns' one schema (see CharRNNModel).
SIGNATURE = ModelSignature(
    outputs=Schema([ColSpec("string")]), params=ParamSchema([ParamSpec("precision", "string", DEFAULT_PRECISION)])
)
