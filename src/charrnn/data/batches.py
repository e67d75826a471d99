"""Truncated-BPTT batches as the classic notebooks build them, as views of a (memory-mapped) id array.

The array is cut into `batch_size` contiguous streams; window k of every stream follows window k-1,
so the recurrent state carried from one window to the next has really seen the preceding text.
"""

import numpy as np
import torch

from charrnn.errors import CharRNNError


def streams(ids, batch_size):
    """(inputs, targets): two (batch_size, length) views, targets = inputs shifted by one character."""
    length = (len(ids) - 1) // batch_size
    inputs = ids[: batch_size * length].reshape(batch_size, length)
    targets = ids[1 : batch_size * length + 1].reshape(batch_size, length)
    return inputs, targets


def num_windows(ids, batch_size, num_steps):
    """Full training windows per epoch."""
    return ((len(ids) - 1) // batch_size) // num_steps


def windows(ids, batch_size, num_steps, device, start=0, partial=False):
    """Yield (x, y) tensor windows on `device`, from window index `start` on.

    Training uses full windows only; evaluation passes partial=True to cover the tail of each stream.
    """
    inputs, targets = streams(ids, batch_size)
    stream_length = inputs.shape[1]
    stop = stream_length if partial else num_windows(ids, batch_size, num_steps) * num_steps
    for begin in range(start * num_steps, stop, num_steps):
        end = min(begin + num_steps, stop)
        yield _tensor(inputs[:, begin:end], device), _tensor(targets[:, begin:end], device)


def _tensor(view, device):
    """A copy of `view`: a window that is a contiguous slice of the read-only map (one stream) would otherwise
    be aliased by the tensor, which torch warns is undefined behaviour."""
    return torch.from_numpy(np.array(view, order="C")).to(device, non_blocking=True)


def load_ids(path):
    """A stage's .npy id array, memory-mapped; missing or unreadable is a CharRNNError."""
    try:
        return np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise CharRNNError(f"{path} not found (run `dvc repro` to build it)") from None
    except (ValueError, OSError) as err:
        raise CharRNNError(f"{path} is not a readable id array ({err})") from None
