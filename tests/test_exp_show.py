"""README's experiment table: the baseline and two experiments, readable in a 120-column terminal."""

import re

TABLE = ("exp", "show", "--only-changed", "--drop", ".*/", "--no-pager")  # README's command


def test_exp_show_of_the_baseline_and_two_experiments_fits_120_columns(built):
    built.env["COLUMNS"] = "120"
    try:
        table = built(*TABLE).stdout
    finally:
        del built.env["COLUMNS"]
    lines = table.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 120 and "…" not in table, table
    header = lines[1]
    # the losses one compares first, then the params that differ; no file hashes, no bookkeeping counts
    # (State and Executor: the queue's, when experiments were queued)
    assert re.search(
        r"Experiment +Created( +State +Executor)? +val_loss +test_loss +val_bpc +test_bpc +lstm_size +$", header
    ), table
    assert "/" not in header and "chars" not in header, table
    for name, size in (("wider", 32), ("narrow", 16)):
        [row] = [line for line in lines if f"[{name}]" in line]
        assert re.search(rf"( +\d\.\d+){{4}} +{size} +$", row), table
