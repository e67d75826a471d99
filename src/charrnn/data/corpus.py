"""Known corpora and how to get them: a file already in place, a local mirror, or a download.

Every path ends with the same sha256 check, so a corpus is the same bytes wherever it came from.
"""

import codecs
import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from charrnn import project_root
from charrnn.atomic import atomic_path
from charrnn.errors import CharRNNError

MIRROR_ENV = "CHARRNN_DATA_MIRROR"


@dataclass(frozen=True)
class Corpus:
    """A text to train on. Known corpora carry a checksum and a URL; a user's own file carries a path."""

    name: str
    filename: str  # name of the file at the URL and in a mirror folder
    sha256: str | None = None
    url: str | None = None
    start: int = 0  # characters dropped from the head (a licence header, say) when the text is read
    end: int | None = None  # where the text stops (a licence footer follows), in characters; None = the end
    source: Path | None = None  # a user's own text file

    @property
    def origin(self):
        """Where the text comes from: its URL, or the file URI of a user's own file."""
        return self.url or Path(self.source).resolve().as_uri()


CORPORA = {
    "anna": Corpus(
        name="anna",
        filename="anna.txt",
        sha256="568bb39fc78aca98e9db91c4329dcd1aa5ec4c3df3aca2064ce5d6f023ae16c9",
        url="https://raw.githubusercontent.com/udacity/deep-learning-v2-pytorch/master/"
        "recurrent-neural-networks/char-rnn/data/anna.txt",
        end=1966145,  # the novel ends here; the Project Gutenberg licence footer (19,078 characters) follows
    ),
    "tinyshakespeare": Corpus(
        name="tinyshakespeare",
        filename="tinyshakespeare.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
    ),
    "hamlet": Corpus(
        name="hamlet",
        filename="pg2265.txt",
        sha256="048e9e99c691ebac2756b8442a15291ca13adb7880104a3486cdb2c67e42bdaf",
        url="https://raw.githubusercontent.com/rasbt/python-machine-learning-book-2nd-edition/"
        "master/code/ch16/pg2265.txt",
        start=15858,  # the Project Gutenberg header ends here; the play begins
    ),
}


def resolve(spec):
    """The Corpus for a params `corpus` value: a known name, or a path to a text file."""
    if spec in CORPORA:
        return CORPORA[spec]
    path = Path(spec).expanduser()
    if path.is_file():
        return Corpus(name=path.stem, filename=path.name, source=path)
    if path.exists():
        raise CharRNNError(
            f"corpus '{spec}' is {'a folder' if path.is_dir() else 'not a regular file'}: give a UTF-8 text file"
        )
    if path.suffix or os.sep in spec:
        raise CharRNNError(f"corpus file '{spec}' does not exist")
    raise CharRNNError(f"unknown corpus '{spec}': use one of {', '.join(CORPORA)}, or a path to a UTF-8 text file")


def raw_path(corpus, raw_dir):
    """Where `fetch` puts the corpus: `raw_dir/<name>.txt`."""
    return Path(raw_dir) / f"{corpus.name}.txt"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _make_folder(raw_dir):
    """The folder the corpus goes into, made if missing; one that cannot be is a CharRNNError."""
    try:
        Path(raw_dir).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        what = "is a file, not a folder" if Path(raw_dir).is_file() else f"cannot be made ({err.strerror})"
        raise CharRNNError(f"{raw_dir}, where the corpus goes, {what}") from None


def fetch(corpus, raw_dir, mirror=None):
    """Make `raw_dir/<name>.txt` hold the corpus's verified bytes; return (path, sha256).

    Order: a file already there with the right checksum, then `mirror` (default: $CHARRNN_DATA_MIRROR;
    a relative path is taken from the repository root), then the corpus URL. A user's own file is checked
    for UTF-8 and copied.
    """
    dest = raw_path(corpus, raw_dir)
    if corpus.source is not None:
        check_utf8(corpus.source)
        _make_folder(raw_dir)
        _copy(corpus.source, dest)
        print(f"{dest}: copied from {corpus.source} (UTF-8 checked)")
        return dest, sha256_of(dest)

    if dest.is_file() and sha256_of(dest) == corpus.sha256:
        print(f"{dest}: already present, checksum ok")
        return dest, corpus.sha256

    _make_folder(raw_dir)
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV)
    if mirror:
        # a relative mirror is relative to the repository root, also in DVC's temp copies
        candidate = project_root() / mirror / corpus.filename
        if candidate.is_file():
            _verify(candidate, corpus.sha256, f"mirror file {candidate}")
            _copy(candidate, dest)
            print(f"{dest}: copied from mirror {mirror}")
            return dest, corpus.sha256
        print(f"mirror {mirror} has no {corpus.filename}; downloading instead")

    download(corpus.url, dest, corpus.sha256, mirror_name=corpus.filename)
    return dest, corpus.sha256


def download(url, dest, sha256, mirror_name):
    """Download `url` to `dest` with a progress bar; the file appears only when complete and verified."""
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(tmp, "wb") as out:
                expected = int(response.headers.get("Content-Length") or 0) or None
                received = 0
                with tqdm(total=expected, unit="B", unit_scale=True, desc=dest.name, disable=None) as bar:
                    for block in iter(lambda: response.read(1 << 16), b""):
                        out.write(block)
                        received += len(block)
                        bar.update(len(block))
        except http.client.IncompleteRead as err:
            raise CharRNNError(f"download of {url} broke off after {len(err.partial)} bytes; try again") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise CharRNNError(
                f"could not download {url} ({reason}); without internet, set {MIRROR_ENV} "
                f"to a folder holding {mirror_name}"
            ) from None
        if expected is not None and received != expected:
            raise CharRNNError(f"download of {url} broke off at {received} of {expected} bytes; try again")
        _verify(tmp, sha256, f"download of {url}")
    print(f"{dest}: downloaded from {url}")


def check_utf8(path):
    """Raise a CharRNNError unless `path` is a non-empty UTF-8 text file."""
    path = Path(path)
    if not path.is_file():
        raise CharRNNError(f"corpus file '{path}' does not exist")
    offset = 0
    decoder = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as err:
                raise CharRNNError(
                    f"{path} is not UTF-8 text: byte 0x{block[err.start]:02x} at offset {offset + err.start} "
                    "cannot be decoded (re-save the file as UTF-8)"
                ) from None
            offset += len(block)
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise CharRNNError(f"{path} is not UTF-8 text: it ends inside a multi-byte character") from None
    if offset == 0:
        raise CharRNNError(f"{path} is empty")


def read_chunks(path, start=0, end=None, chunk_chars=1 << 24):
    """Yield the text of `path` in chunks, with universal newlines, characters `start` to `end` (None: all);
    a byte-order mark at its start is not text (utf-8-sig drops it), so it never becomes a character."""
    if not Path(path).is_file():
        raise CharRNNError(f"{path} not found (run `dvc repro fetch` first)")
    remaining = float("inf") if end is None else end - start
    try:
        with open(path, encoding="utf-8-sig", newline=None) as f:
            if start:
                f.read(start)
            while remaining > 0:
                chunk = f.read(int(min(chunk_chars, remaining)))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk
    except UnicodeDecodeError:
        check_utf8(path)  # names the offending byte
        raise


def _verify(path, sha256, what):
    actual = sha256_of(path)
    if actual != sha256:
        raise CharRNNError(f"{what} has sha256 {actual}, expected {sha256}: the file is not the corpus")


def _copy(src, dest):
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
