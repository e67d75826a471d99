"""MLflow: the store, the pipeline's run, the training's live curves, checkpoints logged as models, and
the registry with its champion."""
