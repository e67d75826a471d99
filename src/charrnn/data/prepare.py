"""The prepare stage's work: a corpus file's vocabulary and its text as a compact id array."""

import numpy as np

from charrnn.atomic import atomic_path
from charrnn.data.corpus import read_chunks
from charrnn.data.vocab import UNICODE_SIZE, Vocab, code_points
from charrnn.errors import CharRNNError


def encode_file(path, out_path, corpus, sha256, origin="", start=0, end=None, chunk_chars=1 << 24):
    """Build the vocabulary of a text file and write its ids to `out_path` as a .npy array.

    Two passes over the file in chunks (vocabulary, then ids into a memory-mapped array), so memory
    stays bounded whatever the corpus size.
    """
    seen = np.zeros(UNICODE_SIZE, dtype=bool)
    length = 0
    for chunk in read_chunks(path, start, end, chunk_chars):
        seen[code_points(chunk)] = True
        length += len(chunk)
    if length == 0:
        raise CharRNNError(f"{path} holds no text after its first {start} characters")
    vocab = Vocab(chars=tuple(map(chr, np.flatnonzero(seen))), corpus=corpus, sha256=sha256, origin=origin)

    table = vocab.lookup_table().astype(vocab.dtype)
    with atomic_path(out_path) as tmp:
        ids = np.lib.format.open_memmap(tmp, mode="w+", dtype=vocab.dtype, shape=(length,))
        offset = 0
        for chunk in read_chunks(path, start, end, chunk_chars):
            ids[offset : offset + len(chunk)] = table[code_points(chunk)]
            offset += len(chunk)
        ids.flush()
        del ids
    return vocab, length
