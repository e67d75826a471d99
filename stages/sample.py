"""Stage sample: text from models/best.pt and from every checkpoint kept during training, also logged
to the pipeline's MLflow run, as files and as one table."""

from pathlib import Path

from charrnn import params
from charrnn.atomic import atomic_path
from charrnn.errors import exit_on_error
from charrnn.generation.sample import format_samples, generate
from charrnn.progress import Heartbeat
from charrnn.sampling_rules import sampling_options
from charrnn.tracking.runs import PipelineRun
from charrnn.training import checkpoint
from charrnn.training.device import generation_precision, pick_device, use_threads

OUT_DIR = Path("samples")
BEST = Path("models/best.pt")
SAMPLES_TABLE = "samples.json"  # an MLflow table: the UI shows the texts and compares them across runs


@exit_on_error
def main():
    p = params.load()
    use_threads(p["threads"])
    seeds = range(p["sample.seed"], p["sample.seed"] + p["sample.num_samples"])
    device = pick_device(p["device"])
    options = dict(sampling_options(p), seeds=seeds, device=device)
    steps = {path: checkpoint.load(path)["step"] for path in [*Path("models/checkpoints").glob("*.pt"), BEST]}
    rows = []
    heartbeat = Heartbeat("sample", len(steps) * p["sample.length"], "char")  # a stream's characters
    with PipelineRun.reopen() as run:
        for source in sorted(steps, key=lambda path: (path == BEST, steps[path])):  # best.pt last
            model, vocab = checkpoint.load_model(source)
            precision = generation_precision(p["sample.precision"], device, model.config["cell"])
            texts = generate(model, vocab, **options, precision=precision, on_step=lambda ids: heartbeat.update())
            target = OUT_DIR / f"{source.stem}.txt"
            with atomic_path(target) as tmp:
                tmp.write_text(format_samples(seeds, texts) + "\n", encoding="utf-8")
            run.log_artifact(target, "samples")
            rows += [{"checkpoint": source.stem, "step": steps[source], "prime": p["sample.prime"], "seed": seed,
                      "temperature": p["sample.temperature"], "precision": precision, "text": text}
                     for seed, text in zip(seeds, texts)]
            print(f"{target} ({precision}): {texts[0][:60]!r}...")
        run.log_table(rows, SAMPLES_TABLE)
    heartbeat.close()


if __name__ == "__main__":
    main()
