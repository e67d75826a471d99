"""The MLflow pyfunc model: a DataFrame of prompts in, one generated text per row out.

served_model.py (the "model from code" file MLflow runs on load) instantiates it; the log_models
stage logs it with each checkpoint as an artifact (charrnn/tracking/logged_models.py).
"""

import math

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

from charrnn.errors import CharRNNError
from charrnn.generation.sample import generate
from charrnn.params import SCHEMA
from charrnn.training import checkpoint

MAX_LENGTH = 10_000  # the most characters one served request may ask for
DEFAULT_PRECISION = SCHEMA["sample.precision"].default  # auto, as the sample stage and the CLI


class CharRNNModel(mlflow.pyfunc.PythonModel):
    """The pyfunc flavour: a DataFrame with `prime` (and optional `length`, `temperature`, `top_k`,
    `seed`) in, one generated text per row out; the param `precision` (as sample.precision, default
    auto) is the generation steps' precision."""

    def load_context(self, context):
        self.model, self.vocab = checkpoint.load_model(context.artifacts["checkpoint"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[str]:
        """Bad input raises MlflowException(INVALID_PARAMETER_VALUE): a served model answers 400 with
        the message, not 500."""
        precision = str((params or {}).get("precision") or DEFAULT_PRECISION)
        try:
            return [self._generate(row, precision) for row in _records(model_input)]
        except CharRNNError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None

    def _generate(self, row, precision):
        length = int(_given(row, "length", 200))
        if length > MAX_LENGTH:
            raise CharRNNError(f"length {length} is over the limit of {MAX_LENGTH} characters per request")
        return generate(self.model, self.vocab, str(row["prime"]), length,
                        temperature=float(_given(row, "temperature", 1.0)), top_k=int(_given(row, "top_k", 5)),
                        seeds=[int(_given(row, "seed", 0))], precision=precision)[0]


def _records(model_input):
    if "prime" not in getattr(model_input, "columns", ()):
        raise CharRNNError("the input needs a 'prime' column")
    return model_input.to_dict("records")


def _given(row, key, default):
    value = row.get(key)
    return default if value is None or (isinstance(value, float) and math.isnan(value)) else value


SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "prime"), ColSpec("long", "length", required=False),
                   ColSpec("double", "temperature", required=False), ColSpec("long", "top_k", required=False),
                   ColSpec("long", "seed", required=False)]),
    outputs=Schema([ColSpec("string")]),
    params=ParamSchema([ParamSpec("precision", "string", DEFAULT_PRECISION)]),
)


