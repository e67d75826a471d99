"""Stage sample: text from models/best.pt and from every checkpoint kept during training, also logged
to the pipeline's MLflow run, as files and as one table."""

from pathlib import Path

from charrnn import params
from charrnn.atomic import atomic_path
from charrnn.core import checkpoint
from charrnn.core.device import pick_device, use_threads
from charrnn.dvc_exp import stage
from charrnn.errors import CharRNNError
from charrnn.generation.rules import check_sampling, sampling_options
from charrnn.generation.sample import format_samples, generate
from charrnn.generation.steppers import generation_precision
from charrnn.progress import Heartbeat
from charrnn.tracking.runs import PipelineRun

OUT_DIR = Path("samples")
BEST = Path("models/best.pt")
SAMPLES_TABLE = "samples.json"  # an MLflow table: the UI shows the texts and compares them across runs


@stage
def main():
    p = params.load()
    sample = p.sample
    use_threads(p.threads)
    device = pick_device(p.device)
    seeds = range(sample.seed, sample.seed + sample.num_samples)
    options = dict(sampling_options(sample), seeds=seeds, device=device)
    steps = {path: payload["step"] for path, payload in checkpoint.run_checkpoints(BEST.parent).items()}
    best_model, vocab = checkpoint.load_model(BEST)
    try:  # before any text is written; the run's checkpoints share best.pt's vocabulary and cell
        check_sampling(vocab, **sampling_options(sample), num_samples=sample.num_samples)
        precision = generation_precision(sample.precision, device, best_model.config["cell"])
    except CharRNNError as err:
        raise CharRNNError(f"params.yaml sample section: {err}") from None
    rows = []
    heartbeat = Heartbeat("sample", len(steps) * sample.length, "char")  # a stream's characters
    with PipelineRun.reopen() as run:
        for source in sorted(steps, key=lambda path: (path == BEST, steps[path])):  # best.pt last
            model = best_model if source == BEST else checkpoint.load_model(source)[0]
            texts = generate(model, vocab, **options, precision=precision, on_step=lambda ids: heartbeat.update())
            target = OUT_DIR / f"{source.stem}.txt"
            with atomic_path(target) as tmp:
                tmp.write_text(format_samples(seeds, texts) + "\n", encoding="utf-8")
            run.log_artifact(target, "samples")
            rows += [
                {
                    "checkpoint": source.stem,
                    "step": steps[source],
                    "prime": sample.prime,
                    "seed": seed,
                    "temperature": sample.temperature,
                    "precision": precision,
                    "text": text,
                }
                for seed, text in zip(seeds, texts)
            ]
            print(f"{target} ({precision}): {texts[0][:60]!r}...")
        run.log_table(rows, SAMPLES_TABLE)
    heartbeat.close()


if __name__ == "__main__":
    main()
