"""Stage sample: text from models/best.pt and from every checkpoint kept during training, also logged
to the pipeline's MLflow run."""

from pathlib import Path

from charrnn import checkpoint, params, tracking
from charrnn.atomic import atomic_path
from charrnn.errors import exit_on_error
from charrnn.sample import format_samples, generate, sampling_options
from charrnn.device import pick_device

OUT_DIR = Path("samples")


@exit_on_error
def main():
    p = params.load()
    seeds = range(p["sample.seed"], p["sample.seed"] + p["sample.num_samples"])
    options = dict(sampling_options(p), seeds=seeds, device=pick_device(p["device"]))
    kept = sorted(Path("models/checkpoints").glob("*.pt"), key=lambda path: checkpoint.load(path)["step"])
    with tracking.PipelineRun.reopen() as run:
        for source in [*kept, Path("models/best.pt")]:
            model, vocab = checkpoint.load_model(source)
            texts = generate(model, vocab, **options)
            target = OUT_DIR / f"{source.stem}.txt"
            with atomic_path(target) as tmp:
                tmp.write_text(format_samples(seeds, texts) + "\n", encoding="utf-8")
            run.log_artifact(target, "samples")
            print(f"{target}: {texts[0][:60]!r}...")


if __name__ == "__main__":
    main()
