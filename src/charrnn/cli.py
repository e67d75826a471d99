"""The `charrnn` command: the package's jobs for people, outside the DVC pipeline."""

import argparse

from charrnn import __version__, corpus
from charrnn.errors import exit_on_error


def _fetch(args):
    corpus.fetch(corpus.resolve(args.corpus), args.dest)


def build_parser():
    parser = argparse.ArgumentParser(prog="charrnn", description=__doc__)
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
    return parser


@exit_on_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
