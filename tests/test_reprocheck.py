"""`charrnn repro-check`: every difference between the two runs is listed."""

from helpers import ROOT


def test_repro_check_lists_every_difference(monkeypatch):
    from charrnn.commands import reprocheck

    outputs = iter(
        [
            ({"metrics/train.json": {"val_loss": 1.5, "chars_per_sec": 10.0}, "samples/best.txt": "Far away"}, []),
            (
                {"metrics/train.json": {"val_loss": 1.6, "chars_per_sec": 12.0}, "samples/best.txt": "Far off"},
                ["a second dvc repro was not a no-op"],
            ),
        ]
    )
    monkeypatch.setattr(reprocheck, "_run_from_scratch", lambda *args: next(outputs))
    problems = reprocheck.repro_check(ROOT)
    assert problems == [
        "a second dvc repro was not a no-op",
        "metrics/train.json: val_loss 1.5 != 1.6",
        "samples/best.txt: differs between the two runs",
    ]
