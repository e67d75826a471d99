import numpy as np
import pytest

from charrnn.data.prepare import encode_file
from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError


def encode_text(tmp_path, data: bytes, **kwargs):
    raw = tmp_path / "raw.txt"
    raw.write_bytes(data)
    vocab, length = encode_file(raw, tmp_path / "encoded.npy", "test", "sha", **kwargs)
    return vocab, length, np.load(tmp_path / "encoded.npy")


def test_ids_follow_sorted_characters_and_round_trip(tmp_path):
    vocab, length, ids = encode_text(tmp_path, b"hello, world")
    assert vocab.chars == tuple(sorted(set("hello, world")))
    assert length == 12 and ids.dtype == np.uint8
    assert vocab.decode(ids) == "hello, world"
    assert np.array_equal(vocab.encode("world"), ids[7:])


def test_universal_newlines_and_head_trim(tmp_path):
    vocab, length, ids = encode_text(
        tmp_path, b"HEADER\r\nline one\r\nline two\r\n", start=7
    )  # offsets count "\r\n" as one
    assert vocab.decode(ids) == "line one\nline two\n"
    assert "\r" not in vocab.chars and length == 18


def test_large_vocabulary_uses_uint16(tmp_path):
    text = "".join(map(chr, range(0x4E00, 0x4E00 + 300)))
    vocab, _, ids = encode_text(tmp_path, text.encode())
    assert len(vocab) == 300 and ids.dtype == np.uint16
    assert vocab.decode(ids) == text


def test_chunked_encoding_equals_whole(tmp_path):
    text = "".join(chr(32 + (i * 7919) % 90) for i in range(10_000))
    whole_vocab, _, whole = encode_text(tmp_path, text.encode())
    chunk_vocab, _, chunked = encode_text(tmp_path, text.encode(), chunk_chars=777)
    assert chunk_vocab == whole_vocab and np.array_equal(chunked, whole)


def test_unknown_characters_are_named():
    vocab = Vocab(chars=tuple("abc"), corpus="anna")
    with pytest.raises(CharRNNError, match="not in the anna vocabulary: 'x', 'z'"):
        vocab.encode("abxcz")


def test_save_load_and_bad_files(tmp_path):
    vocab = Vocab(chars=tuple("ab\n"), corpus="c", sha256="s")
    vocab.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json") == vocab
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(CharRNNError, match="is not a vocabulary file"):
        Vocab.load(tmp_path / "junk.json")
    with pytest.raises(CharRNNError, match="not found"):
        Vocab.load(tmp_path / "none.json")


def test_anna_has_the_notebook_figures(mirror, tmp_path):
    vocab, length = encode_file(mirror / "anna.txt", tmp_path / "anna.npy", "anna", "sha")
    assert (length, len(vocab)) == (1_985_223, 83)  # the whole file, licence footer included
    ids = np.load(tmp_path / "anna.npy", mmap_mode="r")
    assert vocab.decode(ids[:40]) == "Chapter 1\n\n\nHappy families are all alike"
