"""The vocabulary: sorted distinct characters, so that ids never depend on hash order."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.atomic import atomic_path, write_json
from charrnn.corpus import read_chunks
from charrnn.errors import CharRNNError

_UNICODE_SIZE = 0x110000


@dataclass(frozen=True)
class Vocab:
    chars: tuple  # characters in id order (sorted by code point)
    corpus: str = ""
    sha256: str = ""

    def __len__(self):
        return len(self.chars)

    @property
    def dtype(self):
        """The smallest unsigned integer type that holds every id."""
        return np.uint8 if len(self) <= 1 << 8 else np.uint16 if len(self) <= 1 << 16 else np.uint32

    def encode(self, text):
        """Ids of `text`; characters outside the vocabulary are a CharRNNError naming them."""
        codes = _code_points(text)
        ids = self.lookup_table()[codes]
        unknown = ids < 0
        if unknown.any():
            names = sorted({repr(chr(c)) for c in np.unique(codes[unknown])})
            raise CharRNNError(
                f"characters not in the {self.corpus or 'model'} vocabulary: {', '.join(names)}"
            )
        return ids.astype(self.dtype)

    def decode(self, ids):
        return "".join(self.chars[i] for i in np.asarray(ids).ravel().tolist())

    def lookup_table(self):
        """Code point -> id table (-1 for characters outside the vocabulary)."""
        table = np.full(_UNICODE_SIZE, -1, dtype=np.int32)
        table[[ord(c) for c in self.chars]] = np.arange(len(self), dtype=np.int32)
        return table

    def save(self, path):
        write_json(path, {"chars": list(self.chars), "corpus": self.corpus, "sha256": self.sha256})

    @classmethod
    def load(cls, path):
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(chars=tuple(data["chars"]), corpus=data["corpus"], sha256=data["sha256"])
        except FileNotFoundError:
            raise CharRNNError(f"{path} not found (run `dvc repro prepare` first)") from None
        except (ValueError, KeyError, TypeError) as err:
            raise CharRNNError(f"{path} is not a vocabulary file ({err})") from None


def _code_points(text):
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def encode_file(path, out_path, corpus, sha256, start=0, end=None, chunk_chars=1 << 24):
    """Build the vocabulary of a text file and write its ids to `out_path` as a .npy array.

    Two passes over the file in chunks (vocabulary, then ids into a memory-mapped array), so memory
    stays bounded whatever the corpus size.
    """
    seen = np.zeros(_UNICODE_SIZE, dtype=bool)
    length = 0
    for chunk in read_chunks(path, start, end, chunk_chars):
        seen[_code_points(chunk)] = True
        length += len(chunk)
    if length == 0:
        raise CharRNNError(f"{path} holds no text after its first {start} characters")
    vocab = Vocab(chars=tuple(map(chr, np.flatnonzero(seen))), corpus=corpus, sha256=sha256)

    table = vocab.lookup_table().astype(vocab.dtype)
    with atomic_path(out_path) as tmp:
        ids = np.lib.format.open_memmap(tmp, mode="w+", dtype=vocab.dtype, shape=(length,))
        offset = 0
        for chunk in read_chunks(path, start, end, chunk_chars):
            ids[offset : offset + len(chunk)] = table[_code_points(chunk)]
            offset += len(chunk)
        ids.flush()
        del ids
    return vocab, length
