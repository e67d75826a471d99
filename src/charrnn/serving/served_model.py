"""The MLflow "model from code" file: MLflow copies it into each logged model and runs it on load,
so no pickled Python object is stored in the model (see tracking/logged_models.py)."""

from mlflow.models import set_model

from charrnn.serving.pyfunc import CharRNNModel

set_model(CharRNNModel())
