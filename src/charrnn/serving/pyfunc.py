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
from charrnn.serving.request_rules import OPTIONS, check_bounds, check_count, checked_option
from charrnn.serving.turns import Busy, Turns

DEFAULT_PRECISION = SCHEMA["sample.precision"].default  # auto, as the sample stage and the CLI


class CharRNNModel(mlflow.pyfunc.PythonModel):
    """The pyfunc flavour: a DataFrame with `prime` (and optional `length`, `temperature`, `top_k`,
    `top_p`, `seed`) in, one generated text per row out; the param `precision` (as sample.precision, default
    auto) is the generation steps' precision. Each value must be what params.yaml's `sample.*` accepts
    (the same rules as the CLI's flags); a column given must have a value in every row (null is off
    for top_k alone); a request stays within request_rules' bounds."""

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


def checked_rows(model_input):
    """The request's rows as {prime, length, temperature, top_k, top_p, seed} of checked plain values."""
    if "prime" not in getattr(model_input, "columns", ()):
        raise CharRNNError("the input needs a 'prime' column")
    records = model_input.to_dict("records")
    check_count(len(records))
    rows = [
        {
            name: checked_option(name, record.get(name, OPTIONS.get(name)), f"row {number}: ")
            for name in ("prime", *OPTIONS)
        }
        for number, record in enumerate(records, 1)
    ]
    check_bounds(rows)
    return rows


SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec("string", "prime"),
            ColSpec("long", "length", required=False),
            ColSpec("double", "temperature", required=False),
            ColSpec("long", "top_k", required=False),
            ColSpec("double", "top_p", required=False),
            ColSpec("long", "seed", required=False),
        ]
    ),
    outputs=Schema([ColSpec("string")]),
    params=ParamSchema([ParamSpec("precision", "string", DEFAULT_PRECISION)]),
)
