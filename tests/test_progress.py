"""What a person sees of long work where DVC pipes the output: lines at a steady interval with the
rate and the time left, and a training that says when it will end within its first seconds."""

import re

import pytest

from charrnn import progress
from charrnn.progress import Heartbeat, duration
from charrnn.training import loop
from charrnn.training.loop import train

from helpers.configs import tiny_corpus, tiny_params

LEFT = r"(\d+ min \d\d s|\d+ s) left, ends about \d\d:\d\d"


@pytest.mark.parametrize(
    "seconds, text", [(0.4, "0 s"), (59, "59 s"), (61, "1 min 01 s"), (3600 + 5 * 60, "1 h 05 min")]
)
def test_durations_read_as_a_person_says_them(seconds, text):
    assert duration(seconds) == text


def test_a_heartbeat_where_no_bar_is_drawn_prints_done_rate_and_time_left(monkeypatch, capsys):
    monkeypatch.setattr(progress, "INTERVAL", 0.0)  # a line at every update (30 s in real work)
    beat = Heartbeat("evaluate val", 1000, "char", extra_seconds=lambda: 0.0)
    for _ in range(4):
        beat.update(100, detail=lambda: "loss 1.2345")
    beat.close()
    lines = capsys.readouterr().out.splitlines()  # pytest's stderr is no terminal: lines, no bar
    assert len(lines) == 4
    assert re.fullmatch(rf"evaluate val: 400/1,000 chars \(40 %\), loss 1\.2345, [\d,]+ chars/s, {LEFT}", lines[-1])


def test_no_lines_within_the_interval_or_when_not_shown(monkeypatch, capsys):
    Heartbeat("quiet", 10, "step").update(5)  # 30 s have not passed
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    Heartbeat("hidden", 10, "step", show=False).update(5)  # a DDP rank other than 0
    assert capsys.readouterr().out == ""


def test_a_piped_training_says_its_steps_its_end_and_then_lines_with_loss_speed_and_eta(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    monkeypatch.setattr(loop.Progress, "FIRST_ESTIMATE", 0.0)
    train_ids, val_ids, vocab = tiny_corpus()
    train(tiny_params(epochs=1), train_ids, val_ids, vocab, tmp_path)
    lines = capsys.readouterr().out.splitlines()
    [model] = [index for index, line in enumerate(lines) if line.startswith("model: ")]
    [end] = [
        index
        for index, line in enumerate(lines)
        if re.fullmatch(rf"[\d,]+ chars/s: {LEFT} \(validations included\)", line)
    ]
    first_validation = next(index for index, line in enumerate(lines) if line.startswith("step "))
    assert "; 39 steps on cpu" in lines[model] and model < end < first_validation  # the steps, then the end
    steady = [line for line in lines if line.startswith("training: ")]
    assert steady and all(
        re.fullmatch(
            rf"training: \d+/39 steps \(\d+ %\), train loss \d\.\d{{4}}, [\d,]+ chars/s, "
            rf"{LEFT}",
            line,
        )
        for line in steady
    ), steady
    validations = [line for line in lines if line.startswith("step ")]
    assert re.search(rf"chars/s, {LEFT}$", validations[0]) and validations[-1].endswith("chars/s")  # the last: done
