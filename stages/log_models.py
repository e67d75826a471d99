"""Stage log_models: every checkpoint kept in training, and best.pt, logged as a servable MLflow model
of the pipeline's run with the metrics of its step (best.pt's also with the test metrics), and the
run's loss curves and vocabulary; the model ids go to models/logged_models.json for register."""

from charrnn.atomic import write_json
from charrnn.dvc_exp import stage
from charrnn.tracking.logged_models import log_checkpoints, log_run_files
from charrnn.tracking.runs import LOGGED_MODELS, PipelineRun


@stage
def main():
    with PipelineRun.reopen() as run:
        log_run_files(run, "plots/train/loss.csv", "data/prepared/vocab.json")
        logged = log_checkpoints(run, "models")
        write_json(LOGGED_MODELS, logged)
    print(
        f"logged {len(logged['models'])} checkpoints as models of MLflow run {run.id}; "
        f"best.pt's: {logged['best_model_id']}"
    )


if __name__ == "__main__":
    main()
