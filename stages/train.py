"""Stage train: fit the char-RNN on the train split, validating on val; checkpoints under models/.

Opens the pipeline's MLflow run (or continues it on resume) with live curves, and writes the run's id
to models/mlflow_run.json for the later stages. With `processes` > 1 it runs itself again under
torchrun (data-parallel), and only rank 0 tracks and writes. It runs training code alone and reads
no sample option: `charrnn doctor` checks those against the corpus before a training, and the sample
stage uses them.
"""

from charrnn import params
from charrnn.atomic import write_csv, write_json
from charrnn.core.device import use_threads
from charrnn.data.batches import load_ids
from charrnn.data.split import require_one_batch
from charrnn.data.vocab import Vocab
from charrnn.dvc_exp import stage
from charrnn.tracking.live import TrainingTracker
from charrnn.tracking.runs import RUN_FILE
from charrnn.training import distributed
from charrnn.training.loop import train

VOCAB = "data/prepared/vocab.json"


@stage
def main():
    p = params.load()
    use_threads(p.threads)
    vocab = Vocab.load(VOCAB)
    train_ids = load_ids("data/split/train.npy")
    val_ids = load_ids("data/split/val.npy")
    if p.processes > 1 and not distributed.launched():
        # checked here too, so that too small a shard is one error line rather than one per process
        require_one_batch("train", len(train_ids), p.batch_size, p.num_steps, p.processes)
        distributed.relaunch(p.processes, __file__)
    if not distributed.is_main():
        train(p, train_ids, val_ids, vocab, "models")
        return
    with TrainingTracker(p, vocab) as tracker:
        metrics, history = train(p, train_ids, val_ids, vocab, "models", tracker=tracker)
        tracker.training_done()
        write_csv("plots/train/loss.csv", history)
        write_json("metrics/train.json", metrics)
        tracker.log_summary(metrics)
        write_json(RUN_FILE, {"run_id": tracker.run.id})
    print(
        f"best val loss {metrics['best_val_loss']:.4f} at step {metrics['best_step']}, "
        f"{metrics['chars_per_sec']:,.0f} chars/s; MLflow run {tracker.run.id}"
    )


if __name__ == "__main__":
    main()
