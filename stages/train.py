"""Stage train: fit the char-RNN on the train split, validating on val; checkpoints under models/.

Opens the pipeline's MLflow run (or continues it on resume), logs every kept checkpoint and best.pt as
a model of the run, and writes the run's id and best.pt's model id to models/mlflow_run.json for the
later stages. With `processes` > 1 it runs itself again under torchrun (data-parallel), and
only rank 0 tracks and writes.
"""

from charrnn import distributed, logged_models, params, tracking
from charrnn.atomic import write_csv, write_json
from charrnn.batches import load_ids
from charrnn.device import pick_device
from charrnn.errors import CharRNNError, exit_on_error
from charrnn.sample import check_sampling, sampling_options
from charrnn.split import require_one_batch
from charrnn.steppers import resolve
from charrnn.train import train
from charrnn.vocab import Vocab

VOCAB = "data/prepared/vocab.json"


@exit_on_error
def main():
    p = params.load()
    vocab = Vocab.load(VOCAB)
    device = pick_device(p["device"])
    try:  # the sample stage runs after hours of training: a bad sample option must fail now, not then
        check_sampling(vocab, **sampling_options(p))
        resolve(p["sample.precision"], device, p["cell"])
    except CharRNNError as err:
        raise CharRNNError(f"params.yaml sample section: {err}") from None
    train_ids = load_ids("data/split/train.npy")
    val_ids = load_ids("data/split/val.npy")
    if p["processes"] > 1 and not distributed.launched():
        # checked here too, so that too small a shard is one error line rather than one per process
        require_one_batch("train", len(train_ids), p["batch_size"], p["num_steps"], p["processes"])
        distributed.relaunch(p["processes"], __file__)
    if not distributed.is_main():
        train(p, train_ids, val_ids, vocab, "models")
        return
    with tracking.TrainingTracker(p, vocab) as tracker:
        metrics, history = train(p, train_ids, val_ids, vocab, "models", tracker=tracker)
        tracker.training_done()
        write_csv("plots/train/loss.csv", history)
        write_json("metrics/train.json", metrics)
        tracking.log_training(tracker.run, metrics, history, VOCAB)
        best_model_id = logged_models.log_checkpoints(tracker.run, "models")
        write_json(tracking.RUN_FILE, {"run_id": tracker.run.id, "best_model_id": best_model_id})
    print(f"best val loss {metrics['best_val_loss']:.4f} at step {metrics['best_step']}, "
          f"{metrics['chars_per_sec']:,.0f} chars/s; MLflow run {tracker.run.id}")


if __name__ == "__main__":
    main()
