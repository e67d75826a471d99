"""Serving: the MLflow pyfunc model that writes text for a DataFrame of prompts (mlflow models serve)."""
