"""The vocabulary: sorted distinct characters, so that ids never depend on hash order."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn.atomic import write_json
from charrnn.errors import CharRNNError

UNICODE_SIZE = 0x110000


@dataclass(frozen=True)
class Vocab:
    chars: tuple  # characters in id order (sorted by code point)
    corpus: str = ""
    sha256: str = ""
    origin: str = ""  # where the corpus came from: its URL, or the file URI of one's own text

    def same_text(self, other):
        """The same characters of the same corpus bytes: ids mean the same in both."""
        return (self.chars, self.sha256) == (other.chars, other.sha256)

    def __len__(self):
        return len(self.chars)

    @property
    def dtype(self):
        """The smallest unsigned integer type that holds every id."""
        return np.uint8 if len(self) <= 1 << 8 else np.uint16 if len(self) <= 1 << 16 else np.uint32

    def encode(self, text):
        """Ids of `text`; characters outside the vocabulary are a CharRNNError naming them."""
        codes = code_points(text)
        ids = self.lookup_table()[codes]
        unknown = ids < 0
        if unknown.any():
            names = sorted({repr(chr(c)) for c in np.unique(codes[unknown])})
            raise CharRNNError(f"characters not in the {self.corpus or 'model'} vocabulary: {', '.join(names)}")
        return ids.astype(self.dtype)

    def decode(self, ids):
        return "".join(self.chars[i] for i in np.asarray(ids).ravel().tolist())

    def lookup_table(self):
        """Code point -> id table (-1 for characters outside the vocabulary)."""
        table = np.full(UNICODE_SIZE, -1, dtype=np.int32)
        table[[ord(c) for c in self.chars]] = np.arange(len(self), dtype=np.int32)
        return table

    def save(self, path):
        write_json(
            path, {"chars": list(self.chars), "corpus": self.corpus, "sha256": self.sha256, "origin": self.origin}
        )

    @classmethod
    def load(cls, path):
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                chars=tuple(data["chars"]), corpus=data["corpus"], sha256=data["sha256"], origin=data.get("origin", "")
            )
        except FileNotFoundError:
            raise CharRNNError(f"{path} not found (run `dvc repro prepare` first)") from None
        except (ValueError, KeyError, TypeError) as err:
            raise CharRNNError(f"{path} is not a vocabulary file ({err})") from None


def code_points(text):
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
