"""The `charrnn` command: the package's jobs for people, outside the DVC pipeline."""

import argparse
import sys

from charrnn import __version__, params
from charrnn.core import checkpoint
from charrnn.core.device import pick_device, use_threads
from charrnn.data import corpus
from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError, exit_on_error
from charrnn.generation.rules import usable_prime
from charrnn.generation.sample import format_samples, generate
from charrnn.memory import keep_freed_memory
from charrnn.params import GENERATION_PRECISIONS, SCHEMA

# charrnn.tracking imports MLflow (seconds); the commands that need it import it when they run.


def _fetch(args):
    corpus.fetch(corpus.resolve(args.corpus), args.dest)


def _sample(args):
    use_threads(args.threads)
    if args.model:
        from charrnn.tracking.model_uris import download_checkpoint

        args.checkpoint = download_checkpoint(args.model)
    model, vocab = checkpoint.load_model(args.checkpoint)
    seeds = range(args.seed, args.seed + args.num_samples)
    stream = args.num_samples == 1
    started = []

    def print_step(ids):
        if not started:  # the options are valid once the first character comes: show the prime first
            started.append(True)
            sys.stdout.write(usable_prime(vocab, args.prime, args.drop_unknown))
        sys.stdout.write(vocab.chars[ids[0].item()])
        sys.stdout.flush()

    texts = generate(
        model,
        vocab,
        args.prime,
        args.length,
        args.temperature,
        args.top_k,
        args.top_p,
        seeds,
        pick_device(args.device),
        args.drop_unknown,
        on_step=print_step if stream else None,
        precision=args.precision,
    )
    if started:
        sys.stdout.write("\n")
    else:
        print(format_samples(seeds, texts))


def _compare(args):
    from charrnn.commands.compare import compare

    use_threads(args.threads)
    print(
        compare(
            args.model_a, args.model_b, args.prime, args.length, args.seed, args.temperature, args.top_k, args.precision
        )
    )


def _promote(args):
    from charrnn.tracking import registry, runs, store

    p = params.load(args.params)
    vocab = Vocab.load(args.vocab)
    registry.promote(
        store.connect(),
        registry.model_name(vocab.corpus),
        runs.comparability(p, vocab),
        dry_run=args.dry_run,
        switch_split=args.switch_split,
    )


def _ui(args):
    from charrnn.commands.ui import ui
    from charrnn.tracking import registry, runs

    p = params.load(args.params)
    name = corpus.resolve(p.corpus).name
    ui(runs.experiment_name(p, name), registry.model_name(name), args.host, args.port)


def _play(args):
    from charrnn.commands.play import play

    use_threads(args.threads)
    play(args.host, args.port, pick_device(args.device))


def _serve(args):
    from charrnn.commands.serve import serve
    from charrnn.tracking import registry

    use_threads(args.threads)
    if args.model is None:
        name = registry.model_name(corpus.resolve(params.load(args.params).corpus).name)
        args.model = f"models:/{name}@champion"
    serve(args.model, args.host, args.port)


def _doctor(args):
    from charrnn.commands.doctor import doctor

    keep_freed_memory()  # its training burst timed as the train stage runs: see memory.py
    p = params.with_overrides(params.load(args.params), args.set)
    doctor(p, use_threads(p.threads))


def _repro_check(args):
    from charrnn.commands.reprocheck import git_root, repro_check

    problems = repro_check(git_root("repro-check"), keep=args.keep)
    for problem in problems:
        print(f"  {problem}")
    if problems:
        raise CharRNNError(f"repro-check failed: {len(problems)} difference(s) between two runs from scratch")
    print("repro-check: identical metrics and samples; a second dvc repro is a no-op")


def _report(args):
    from charrnn.commands.report import write_report

    print(f"report written to {write_report(args.base, args.output, args.repro_check)}")


def _port(text):
    """--port's type: a TCP port number."""
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise CharRNNError(f"--port must be a port number from 0 to 65535 (got {text!r})")
    return int(text)


def int_or_null(text):
    """--top-k's type: an integer, or null (as in params.yaml) for off."""
    return None if text.lower() in ("null", "none", "off") else int(text)


_SAMPLING_TYPES = {
    "prime": str,
    "length": int,
    "temperature": float,
    "top_k": int_or_null,
    "top_p": float,
    "seed": int,
    "num_samples": int,
}


def _sampling_arguments(parser, *names, **defaults):
    """--prime, --length, ... as the `sample.*` params: their rules and defaults, unless `defaults` says."""
    for name in names:
        param = SCHEMA[f"sample.{name}"]
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            type=_checked_by_schema(f"sample.{name}", _SAMPLING_TYPES[name]),
            default=defaults.get(name, param.default),
            help=f"{param.rule} (default: %(default)s)",
        )


def _checked_by_schema(param_name, parse):
    """An argparse type for the param's flag (--length for sample.length): `parse` of the text, if
    params.yaml's `param_name` accepts it, else a CharRNNError naming the rule (argparse lets it
    through: it converts only ValueError, TypeError and its own errors)."""
    flag, rule = f"--{param_name.rpartition('.')[2].replace('_', '-')}", SCHEMA[param_name].rule

    def checked(text):
        try:
            return params.check_value(param_name, parse(text), flag)
        except (ValueError, CharRNNError):
            raise CharRNNError(f"{flag} must be {rule} (got {text!r})") from None

    return checked


def _precision_argument(parser):
    parser.add_argument(
        "--precision",
        default=SCHEMA["sample.precision"].default,
        choices=GENERATION_PRECISIONS,
        help="of the generation steps: auto is bf16 where the device has bf16 kernels, else int8 "
        "weights on a CPU, else fp32; another precision writes other text (default: %(default)s)",
    )


def _threads_argument(parser):
    auto_or_int = lambda text: text if text == "auto" else int(text)  # noqa: E731
    parser.add_argument(
        "--threads",
        type=_checked_by_schema("threads", auto_or_int),
        default="auto",
        help="CPU threads: auto is OMP_NUM_THREADS where set, else the CPUs shared among this "
        "project's DVC queue jobs (default: %(default)s)",
    )


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose refusals are one `error:` line and exit 1, as every other (argparse
    prints its usage and exits 2); `--help` shows the usage."""

    def error(self, message):
        raise CharRNNError(f"{self.prog}: {message} (see {self.prog} --help)")


def build_parser():
    parser = Parser(prog="charrnn", description=__doc__)
    parser.add_argument("--version", action="version", version=f"charrnn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    fetch = commands.add_parser(
        "fetch",
        help="download or copy a corpus, checksum verified",
        description=f"Known corpora: {', '.join(corpus.CORPORA)}. Without internet, set "
        f"{corpus.MIRROR_ENV} to a folder holding the corpus files.",
    )
    fetch.add_argument("corpus", help="a known corpus name or a path to a UTF-8 text file")
    fetch.add_argument("--dest", default="data/raw", help="folder to write <name>.txt into (default: %(default)s)")
    fetch.set_defaults(run=_fetch)

    sample = commands.add_parser(
        "sample",
        help="write text from a trained model, streaming it as it is generated",
        description="Sample from a checkpoint. Temperature 0 is greedy decoding: deterministic, and prone to loops.",
    )
    source = sample.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", default="models/best.pt", help="a charrnn checkpoint (default: %(default)s)")
    source.add_argument("--model", help="an MLflow model URI instead, e.g. models:/charrnn-anna@champion")
    _sampling_arguments(sample, "prime", "length", "temperature", "top_k", "top_p", "seed", "num_samples")
    sample.add_argument("--drop-unknown", action="store_true", help="drop prime characters outside the vocabulary")
    sample.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _precision_argument(sample)
    _threads_argument(sample)
    sample.set_defaults(run=_sample)

    side = commands.add_parser(
        "compare",
        help="two models write from the same prime and seed, shown side by side",
        description="Each model is an MLflow model URI (models:/charrnn-anna/1, models:/charrnn-anna@champion) "
        "or a checkpoint file. Both generate from the same prime with the same seed; the texts are printed in "
        "two columns on a wide terminal, one after the other on a narrow one, each headed with its version, "
        "val loss and size. Uses MLFLOW_TRACKING_URI, else mlruns/mlflow.db.",
    )
    side.add_argument("model_a", metavar="MODEL_A")
    side.add_argument("model_b", metavar="MODEL_B")
    _sampling_arguments(side, "prime", "length", "seed", "temperature", "top_k", length=300)
    _precision_argument(side)
    _threads_argument(side)
    side.set_defaults(run=_compare)

    promote = commands.add_parser(
        "promote",
        help="give the alias 'champion' to the registered version with the lowest val loss",
        description="Among the versions of charrnn-<corpus> with the split of params.yaml and this charrnn's "
        "evaluation protocol, the one with the lowest validation loss gets the alias 'champion'. Uses "
        "MLFLOW_TRACKING_URI, else mlruns/mlflow.db.",
    )
    promote.add_argument("--dry-run", action="store_true", help="print the decision, change nothing")
    promote.add_argument(
        "--switch-split",
        action="store_true",
        help="move champion even if it holds a version of another split or evaluation protocol",
    )
    promote.add_argument("--params", default="params.yaml", help="(default: %(default)s)")
    promote.add_argument("--vocab", default="data/prepared/vocab.json", help="(default: %(default)s)")
    promote.set_defaults(run=_promote)

    ui = commands.add_parser(
        "ui",
        help="start MLflow's UI on the project's store and print the links to its training runs",
        description="Serves MLflow's UI on mlruns/mlflow.db (or, when MLFLOW_TRACKING_URI names a tracking "
        "server, uses that server's) and prints the links to params.yaml's experiment: its training runs as "
        "charts (the train and val loss curves first), its logged checkpoints, and the champion's page in the "
        "registry. Runs until Ctrl-C.",
    )
    ui.add_argument(
        "--host", default="127.0.0.1", help="the address to serve on (default: %(default)s, this machine only)"
    )
    ui.add_argument("--port", type=_port, default=5000, help="(default: %(default)s)")
    ui.add_argument("--params", default="params.yaml", help="(default: %(default)s)")
    ui.set_defaults(run=_ui)

    page = commands.add_parser(
        "play",
        help="serve a page for the browser where the models write text as you watch",
        description="Serves a page on this machine (http://127.0.0.1:5050/ by default) where the registered "
        "versions of every charrnn-<corpus> model (the champion first) and this workspace's checkpoints "
        "(models/best.pt, the kept ones) write text from a prime you type, streaming it as it is generated: "
        "one model, two side by side, or the kept checkpoints of a run one under the other, to watch it "
        "learn. The options follow the rules of `charrnn sample` and the limits of the served model. Uses "
        "MLFLOW_TRACKING_URI, else mlruns/mlflow.db. Runs until Ctrl-C.",
    )
    page.add_argument("--port", type=_port, default=5050, help="(default: %(default)s)")
    page.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to serve on (default: %(default)s, this "
        "machine only; any other prints a warning: the page is open to whoever reaches it)",
    )
    page.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _threads_argument(page)
    page.set_defaults(run=_play)

    served = commands.add_parser(
        "serve",
        help="serve a registered model (the champion by default) over HTTP, as MLflow's scoring server",
        description="Serves a model of the registry on this machine (http://127.0.0.1:5001/invocations by "
        "default; /ping answers when it is up) with MLflow's scoring server: the same requests as "
        "`mlflow models serve`, behind charrnn's bounds (a request body of at most 8 MiB, JSON nested too "
        "deeply refused as 400) and without stack traces in its answers. Uses MLFLOW_TRACKING_URI, else "
        "mlruns/mlflow.db. Runs until Ctrl-C.",
    )
    served.add_argument("--model", help="a model URI (default: models:/charrnn-<params.yaml's corpus>@champion)")
    served.add_argument("--port", type=_port, default=5001, help="(default: %(default)s)")
    served.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to serve on (default: %(default)s, this machine only; any other prints a warning)",
    )
    served.add_argument("--params", default="params.yaml", help="(default: %(default)s)")
    _threads_argument(served)
    served.set_defaults(run=_serve)

    doctor = commands.add_parser(
        "doctor",
        help="what this machine will do: device, precision, threads, corpus, MLflow store, and how long "
        "`dvc repro` will take",
        description="Says in a few seconds what `dvc repro` will do on this machine with params.yaml: the device "
        "and the precisions and threads `auto` picks, where the corpus and the MLflow store are, whether the "
        "optional parts' programs (PostgreSQL, Chromium) are installed, and the pipeline's time from scratch, "
        "estimated from a short burst of the model's own training, evaluation and generation here.",
    )
    doctor.add_argument("--params", default="params.yaml", help="(default: %(default)s)")
    doctor.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="as `dvc exp run -S KEY=VALUE`: estimate that variant instead",
    )
    doctor.set_defaults(run=_doctor)

    check = commands.add_parser(
        "repro-check",
        help="run the pipeline twice from scratch (tiny config) and compare every metric",
        description="In two scratch copies of this repository (its git-tracked files), run `dvc repro` with a "
        "tiny configuration; fail listing any metric or sample that differs (wall-clock chars_per_sec aside), "
        "or if a second `dvc repro` is not a no-op. Run it anywhere in the repository.",
    )
    check.add_argument("--keep", action="store_true", help="keep the scratch copies for inspection")
    check.set_defaults(run=_repro_check)

    report = commands.add_parser(
        "report",
        help="write a Markdown report of the workspace against a git revision",
        description="Compare the workspace with a git revision: the params that differ, the DVC metrics "
        "(metrics/eval.json: old, new, change), the train/val loss curves of both in one PNG, and the start of "
        "samples/best.txt. Run it from the repository root after `dvc repro`.",
    )
    report.add_argument("--base", default="main", help="the git revision to compare with (default: %(default)s)")
    report.add_argument("--output", default="report", help="folder for report.md and its image (default: %(default)s)")
    report.add_argument("--repro-check", action="store_true", help="also run `charrnn repro-check` and add its verdict")
    report.set_defaults(run=_report)
    return parser


@exit_on_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
