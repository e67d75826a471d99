"""The MLflow "model from code" file: MLflow copies it into each logged model and runs it on load,
so no pickled Python object is stored in the model (see logged_models.log_checkpoint)."""

from mlflow.models import set_model

from charrnn.pyfunc import CharRNNModel

set_model(CharRNNModel())
