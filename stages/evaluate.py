"""Stage evaluate: loss, bits/char and perplexity of models/best.pt on the val and test splits, by the
one evaluation protocol (charrnn.evaluate), also logged to the pipeline's MLflow run and the test
metrics to best.pt's logged model."""

from charrnn import params, tracking
from charrnn.atomic import write_json
from charrnn.batches import load_ids
from charrnn.errors import exit_on_error
from charrnn.evaluate import PROTOCOL_ID, evaluate_checkpoint
from charrnn.device import pick_device
from charrnn.vocab import Vocab


@exit_on_error
def main():
    p = params.load()
    with tracking.PipelineRun.reopen() as run:
        vocab = Vocab.load("data/prepared/vocab.json")
        splits = {name: load_ids(f"data/split/{name}.npy") for name in ("val", "test")}
        metrics = evaluate_checkpoint("models/best.pt", vocab, splits, pick_device(p["device"]))
        write_json("metrics/eval.json", {**metrics, "eval_protocol": PROTOCOL_ID})
        # best.pt's val_loss and val_bpc are on the run's curves at its step already (the same protocol)
        run.log_metrics({"val_perplexity": metrics["val_perplexity"]})
        # the test metrics also go to best.pt's logged model (its val metrics came with training)
        run.log_metrics({key: value for key, value in metrics.items() if key.startswith("test_")},
                        model_id=tracking.run_record("best_model_id"))
    print(", ".join(f"{key} {value:.4f}" for key, value in metrics.items()))


if __name__ == "__main__":
    main()
