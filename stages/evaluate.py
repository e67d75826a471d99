"""Stage evaluate: loss, bits/char and perplexity of models/best.pt on the val and test splits, by the
one evaluation protocol (charrnn.core.evaluate): the losses and bits/char in metrics/eval.json
(the pipeline's one DVC metrics file), all of them in the pipeline's MLflow run."""

from charrnn import params
from charrnn.atomic import write_json
from charrnn.core.device import pick_device, use_threads
from charrnn.core.evaluate import evaluate_checkpoint
from charrnn.core.protocol import PROTOCOL_ID
from charrnn.data.batches import load_ids
from charrnn.data.vocab import Vocab
from charrnn.dvc_exp import stage
from charrnn.tracking.runs import PipelineRun

COMPARED = ("val_loss", "test_loss", "val_bpc", "test_bpc")


@stage
def main():
    p = params.load()
    use_threads(p.threads)
    with PipelineRun.reopen() as run:
        vocab = Vocab.load("data/prepared/vocab.json")
        splits = {name: load_ids(f"data/split/{name}.npy") for name in ("val", "test")}
        metrics = evaluate_checkpoint("models/best.pt", vocab, splits, pick_device(p.device))
        # the DVC metrics, the figures one compares first (`dvc exp show`); perplexities in MLflow only
        write_json(
            "metrics/eval.json",
            {**{key: metrics[key] for key in COMPARED if key in metrics}, "eval_protocol": PROTOCOL_ID},
        )
        # single figures (step 0: bars in the UI's chart view, after the loss curves); the log_models
        # stage links the test metrics to best.pt's logged model
        run.log_metrics(metrics)
    print(", ".join(f"{key} {value:.4f}" for key, value in metrics.items()))


if __name__ == "__main__":
    main()
