"""The experiments README and the docs give (`dvc exp run -S ...`, `charrnn doctor --set ...`): each value
is one the params accept and not the default already, and each recipe fits every built-in corpus it may
run on (every part of its split holds one batch), as docs/training.md promises."""

import re
import shlex

import pytest

from charrnn import params
from charrnn.data import corpus
from charrnn.data.split import require_one_batch, split_array
from charrnn.errors import CharRNNError

from helpers import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "README.md"]
COMMAND = re.compile(r"(?:dvc exp run|charrnn doctor)[^`#\n]*")  # up to the end of the code or a comment
SETS = ("-S", "--set-param", "--set")


def documented_runs():
    """(page:line, [KEY=VALUE, ...]) for each command that sets params; a grid (`-S a=1,2`) is one run a value."""
    runs = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8").replace("\\\n", " ")  # a command continued on the next line
        for number, line in enumerate(text.splitlines(), 1):
            for command in COMMAND.findall(line):
                words = shlex.split(command.replace("...", ""))
                pairs = [w for flag, w in zip(words, words[1:]) if flag in SETS and re.fullmatch(r"[\w.]+=\S+", w)]
                if pairs:
                    runs += [(f"{page.relative_to(ROOT)}:{number}", grid) for grid in expanded(pairs)]
    return runs


def expanded(pairs):
    """The runs of DVC's grid syntax: `lstm_size=256,512` is two."""
    runs = [[]]
    for pair in pairs:
        key, _, values = pair.partition("=")
        runs = [run + [f"{key}={value}"] for run in runs for value in values.split(",")]
    return runs


RUNS = documented_runs()


def test_the_docs_give_experiments_to_check():
    assert len(RUNS) >= 10, RUNS


IDS = [f"{where} {' '.join(pairs)}" for where, pairs in RUNS]


@pytest.mark.parametrize("where, pairs", RUNS, ids=IDS)
def test_a_documented_experiment_is_valid_and_changes_what_it_sets(where, pairs):
    defaults = params.validate(params.defaults())
    variant = params.with_overrides(defaults, pairs, source=where).flat()
    unchanged = [pair for pair in pairs if variant[name_of(pair)] == defaults.flat()[name_of(pair)]]
    assert not unchanged, f"{where}: {unchanged} sets the default"


@pytest.mark.parametrize("where, pairs", RUNS, ids=IDS)
def test_a_documented_experiment_fits_every_built_in_corpus(where, pairs, corpus_lengths):
    variant = params.with_overrides(params.validate(params.defaults()), pairs, source=where)
    names = [variant.corpus] if "corpus" in map(name_of, pairs) else list(corpus.CORPORA)
    for name in names:
        try:
            parts = split_array(range(corpus_lengths[name]), variant)
            require_one_batch("train", len(parts["train"]), variant.batch_size, variant.num_steps, variant.processes)
        except CharRNNError as err:
            pytest.fail(f"{where} on {name}: {err}")


def name_of(pair):
    return pair.partition("=")[0]


@pytest.fixture(scope="module")
def corpus_lengths(mirror):
    """Characters of each built-in corpus as prepare reads them (header and footer cut)."""
    return {
        name: sum(len(chunk) for chunk in corpus.read_chunks(mirror / known.filename, known.start, known.end))
        for name, known in corpus.CORPORA.items()
    }
