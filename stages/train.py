"""Stage train: fit the char-RNN on the train split, validating on val; checkpoints under models/.

Opens the pipeline's MLflow run (or continues it on resume) and writes its id to models/mlflow_run.json
for the later stages. With `processes` > 1 it runs itself again under torchrun (data-parallel), and
only rank 0 tracks and writes.
"""

from charrnn import distributed, params, tracking
from charrnn.atomic import write_csv, write_json
from charrnn.batches import load_ids
from charrnn.errors import exit_on_error
from charrnn.train import train
from charrnn.vocab import Vocab

VOCAB = "data/prepared/vocab.json"


@exit_on_error
def main():
    p = params.load()
    if p["processes"] > 1 and not distributed.launched():
        distributed.relaunch(p["processes"], __file__)
    vocab = Vocab.load(VOCAB)
    train_ids = load_ids("data/split/train.npy")
    val_ids = load_ids("data/split/val.npy")
    if not distributed.is_main():
        train(p, train_ids, val_ids, vocab, "models")
        return
    with tracking.TrainingTracker(p, vocab) as tracker:
        metrics, history = train(p, train_ids, val_ids, vocab, "models", tracker=tracker)
        write_csv("plots/train/loss.csv", history)
        write_json("metrics/train.json", metrics)
        tracking.log_training(tracker.run, metrics, history, VOCAB)
        write_json(tracking.RUN_FILE, {"run_id": tracker.run.id})
    print(f"best val loss {metrics['best_val_loss']:.4f} at step {metrics['best_step']}, "
          f"{metrics['chars_per_sec']:,.0f} chars/s; MLflow run {tracker.run.id}")


if __name__ == "__main__":
    main()
