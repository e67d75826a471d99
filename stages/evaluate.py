"""Stage evaluate: loss, bits/char and perplexity of models/best.pt on the val and test splits, by the
one evaluation protocol (charrnn.training.evaluate), also logged to the pipeline's MLflow run."""

from charrnn import params
from charrnn.atomic import write_json
from charrnn.data.batches import load_ids
from charrnn.data.vocab import Vocab
from charrnn.errors import exit_on_error
from charrnn.tracking.runs import PipelineRun
from charrnn.training.device import pick_device
from charrnn.training.evaluate import PROTOCOL_ID, evaluate_checkpoint


@exit_on_error
def main():
    p = params.load()
    with PipelineRun.reopen() as run:
        vocab = Vocab.load("data/prepared/vocab.json")
        splits = {name: load_ids(f"data/split/{name}.npy") for name in ("val", "test")}
        metrics = evaluate_checkpoint("models/best.pt", vocab, splits, pick_device(p["device"]))
        write_json("metrics/eval.json", {**metrics, "eval_protocol": PROTOCOL_ID})
        # best.pt's val_loss and val_bpc are on the run's curves at its step already (the same protocol);
        # the log_models stage links the test metrics to best.pt's logged model
        run.log_metrics({key: value for key, value in metrics.items() if key not in ("val_loss", "val_bpc")})
    print(", ".join(f"{key} {value:.4f}" for key, value in metrics.items()))


if __name__ == "__main__":
    main()
