import dataclasses

import numpy as np
import pytest

from charrnn import params
from charrnn.data.split import split_array, split_bounds
from charrnn.errors import CharRNNError


def test_tiny_shakespeare_benchmark_split():
    bounds = split_bounds(1_115_394, 0.9, 0.1, 0.0)
    assert bounds == {"train": (0, 1_003_854), "val": (1_003_854, 1_115_394), "test": (1_115_394, 1_115_394)}


def test_three_way_split_is_contiguous_and_complete():
    bounds = split_bounds(1_000_003, 0.7, 0.2, 0.1)  # 0.7 + 0.2 + 0.1 == 0.9999999999999999 in floats
    assert bounds["train"][0] == 0 and bounds["test"][1] == 1_000_003
    assert bounds["train"][1] == bounds["val"][0] and bounds["val"][1] == bounds["test"][0]


def test_fractions_below_one_leave_the_tail_unused():
    assert split_bounds(1000, 0.5, 0.1, 0.1)["test"] == (600, 700)


def test_parts_are_views_of_the_encoded_array():
    encoded = np.arange(10_000, dtype=np.uint16)
    p = params.validate({**params.defaults(), "batch_size": 4, "num_steps": 10})
    parts = split_array(encoded, p)
    assert [len(parts[name]) for name in ("train", "val", "test")] == [9000, 500, 500]
    assert np.array_equal(np.concatenate(list(parts.values())), encoded)
    assert all(part.base is encoded for part in parts.values())  # views: no copy of the corpus


def test_a_split_smaller_than_one_batch_is_refused():
    p = params.validate({**params.defaults(), "batch_size": 64, "num_steps": 100})
    with pytest.raises(CharRNNError, match="the val split has 5,000 characters, fewer than one batch .*6,401"):
        split_array(np.zeros(100_000, dtype=np.uint8), p)
    # an empty test split is fine when test_frac is 0
    p = dataclasses.replace(p, val_frac=0.1, test_frac=0.0)
    assert len(split_array(np.zeros(100_000, dtype=np.uint8), p)["test"]) == 0
