"""The training streams and their windows: contiguous, carried across windows, read from a memory map."""

import numpy as np
import torch

from charrnn.data.batches import num_windows, streams, windows


def test_windows_carry_across_boundaries():
    ids = np.arange(1001, dtype=np.int64)
    inputs, targets = streams(ids, batch_size=4)
    assert np.array_equal(targets, inputs + 1)  # each target is the next character
    assert inputs[1, 0] == inputs[0, -1] + 1  # streams are contiguous pieces of the text

    batches = list(windows(ids, batch_size=4, num_steps=10, device="cpu"))
    assert len(batches) == num_windows(ids, 4, 10) == 25
    for (x, y), (next_x, _) in zip(batches, batches[1:]):
        assert x.shape == y.shape == (4, 10)
        assert torch.equal(y[:, -1], next_x[:, 0])  # last target of a window = first input of the next


def test_partial_windows_cover_each_stream_to_its_end():
    ids = np.arange(1001, dtype=np.int64)
    full = list(windows(ids, 4, 30, "cpu"))
    partial = list(windows(ids, 4, 30, "cpu", partial=True))
    assert sum(x.shape[1] for x, _ in full) == 240
    assert sum(x.shape[1] for x, _ in partial) == 250 and partial[-1][0].shape == (4, 10)


def test_windows_are_read_from_a_memory_map(tmp_path):
    np.save(tmp_path / "ids.npy", np.arange(500, dtype=np.uint8))
    ids = np.load(tmp_path / "ids.npy", mmap_mode="r")
    inputs, _ = streams(ids, 4)
    assert isinstance(inputs.base, np.memmap) or isinstance(inputs, np.memmap)
    x, _ = next(windows(ids, 4, 10, "cpu", start=2))
    assert x[0, 0].item() == 20


def test_a_window_never_aliases_the_read_only_memory_map(tmp_path):
    """One stream (batch_size 1, or the protocol's single stream of a small split) makes a window a contiguous
    slice of the map: torch would alias read-only memory and warn of undefined behaviour."""
    np.save(tmp_path / "ids.npy", np.arange(500, dtype=np.uint8))
    ids = np.load(tmp_path / "ids.npy", mmap_mode="r")
    for batch_size in (1, 4):
        for x, y in windows(ids, batch_size, 10, "cpu", partial=True):
            assert not np.shares_memory(x.numpy(), ids) and not np.shares_memory(y.numpy(), ids)
            assert x.numpy().flags.writeable
