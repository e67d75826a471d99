import dataclasses
import hashlib
import math
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

from charrnn import dvc_exp, modules
from charrnn.core import checkpoint
from charrnn.core import device as device_module
from charrnn.core.device import pick_device, resolve_precision
from charrnn.core.evaluate import evaluate
from charrnn.errors import CharRNNError
from charrnn.training import loop as train_module
from charrnn.training.loop import learning_rate, train
from charrnn.training.run import Checkpointer

from helpers.configs import tiny_corpus, tiny_params
from helpers.running import prepare
from helpers.training import Killed, dying_after_checkpoint


def test_loss_falls_and_best_is_the_min_val_step(tmp_path):
    train_ids, val_ids, vocab = tiny_corpus()
    metrics, history = train(tiny_params(epochs=3), train_ids, val_ids, vocab, tmp_path)

    assert history[0]["step"] == 10 and history[-1]["step"] == metrics["steps"] == 3 * 39
    assert history[-1]["train_loss"] < history[0]["train_loss"] - 0.5
    assert metrics["best_val_loss"] < math.log(len(vocab)) - 1.0  # far better than uniform guessing
    best = min(history, key=lambda row: row["val_loss"])
    assert (metrics["best_step"], metrics["best_val_loss"]) == (best["step"], best["val_loss"])
    saved = checkpoint.load(tmp_path / "best.pt")
    assert (saved["step"], saved["val_loss"]) == (best["step"], best["val_loss"])
    assert set(metrics) >= {
        "train_loss",
        "val_loss",
        "best_val_loss",
        "best_step",
        "steps",
        "chars_per_sec",
        "num_params",
        "device",
    }


def test_best_checkpoint_alone_rebuilds_the_model(tmp_path):
    train_ids, val_ids, vocab = tiny_corpus()
    p = tiny_params(epochs=1)
    train(p, train_ids, val_ids, vocab, tmp_path)
    model, loaded_vocab = checkpoint.load_model(tmp_path / "best.pt")
    assert loaded_vocab.same_text(vocab) and loaded_vocab.corpus == vocab.corpus  # a checkpoint keeps no origin
    assert evaluate(model, val_ids, "cpu") == checkpoint.load(tmp_path / "best.pt")["val_loss"]


def without_speed(metrics):
    """Metrics less chars_per_sec, the one wall-clock figure."""
    return {key: value for key, value in metrics.items() if key != "chars_per_sec"}


@pytest.mark.parametrize("cell, precision", [("lstm", "fp32"), ("gru", "auto")])
def test_resume_ends_exactly_as_an_uninterrupted_run(tmp_path, monkeypatch, cell, precision):
    train_ids, val_ids, vocab = tiny_corpus()
    p = tiny_params(cell=cell, precision=precision, epochs=3, eval_every=7, keep_checkpoints=21)  # mid-epoch saves
    whole_metrics, whole_history = train(p, train_ids, val_ids, vocab, tmp_path / "whole")

    with dying_after_checkpoint(8), pytest.raises(Killed):
        train(p, train_ids, val_ids, vocab, tmp_path / "cut")
    assert checkpoint.load(tmp_path / "cut" / "last.pt")["step"] == 56
    resumed_metrics, resumed_history = train(p, train_ids, val_ids, vocab, tmp_path / "cut")

    assert resumed_history == whole_history
    assert without_speed(resumed_metrics) == without_speed(whole_metrics)
    for name in ("best.pt", "last.pt"):
        whole, cut = (checkpoint.load(tmp_path / d / name)["model_state"] for d in ("whole", "cut"))
        assert all(torch.equal(whole[k], cut[k]) for k in whole)
    kept = sorted(path.name for path in (tmp_path / "cut" / "checkpoints").iterdir())
    assert kept == sorted(path.name for path in (tmp_path / "whole" / "checkpoints").iterdir())
    assert len(kept) == 5 and kept[0].startswith("i105_l32_v")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_saves_the_current_step_and_resume_ends_as_an_uninterrupted_run(tmp_path, monkeypatch, signum):
    train_ids, val_ids, vocab = tiny_corpus()
    p = tiny_params(epochs=2, eval_every=10)
    whole_metrics, whole_history = train(p, train_ids, val_ids, vocab, tmp_path / "whole")

    real_step, calls = train_module.train_step, []

    def step_then_signal(*args, **kwargs):
        calls.append(1)
        if len(calls) == 23:  # mid-interval: three steps after the step-20 validation
            signal.raise_signal(signum)  # as Ctrl-C / kill would, while the step is running
        return real_step(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", step_then_signal)
    handler_before = signal.getsignal(signum)
    with pytest.raises(KeyboardInterrupt):
        train(p, train_ids, val_ids, vocab, tmp_path / "cut")
    assert signal.getsignal(signum) is handler_before
    assert checkpoint.load(tmp_path / "cut" / "last.pt")["step"] == 23  # the step it was in, finished
    monkeypatch.setattr(train_module, "train_step", real_step)
    resumed_metrics, resumed_history = train(p, train_ids, val_ids, vocab, tmp_path / "cut")

    assert resumed_history == whole_history  # train_loss of the interrupted interval included
    assert without_speed(resumed_metrics) == without_speed(whole_metrics)


def test_a_kill_between_best_and_last_still_resumes_to_the_same_run(tmp_path, monkeypatch, capsys):
    train_ids, val_ids, vocab = tiny_corpus()
    p = tiny_params(epochs=2, eval_every=10)
    whole_metrics, whole_history = train(p, train_ids, val_ids, vocab, tmp_path / "whole")

    real_save_last = Checkpointer._save_last

    def die_before_last_at_step_30(self, row, *args):
        if row["step"] == 30:
            raise Killed  # best.pt of step 30 is written, last.pt still holds step 20
        real_save_last(self, row, *args)

    monkeypatch.setattr(Checkpointer, "_save_last", die_before_last_at_step_30)
    with pytest.raises(Killed):
        train(p, train_ids, val_ids, vocab, tmp_path / "cut")
    assert checkpoint.load(tmp_path / "cut" / "best.pt")["step"] == 30
    assert checkpoint.load(tmp_path / "cut" / "last.pt")["step"] == 20
    monkeypatch.undo()
    capsys.readouterr()
    resumed_metrics, resumed_history = train(p, train_ids, val_ids, vocab, tmp_path / "cut")
    assert "resuming from" in capsys.readouterr().out
    assert resumed_history == whole_history
    assert without_speed(resumed_metrics) == without_speed(whole_metrics)


def test_a_best_pt_of_another_run_is_never_taken_for_this_runs(tmp_path, monkeypatch, capsys):
    train_ids, val_ids, vocab = tiny_corpus()
    for folder, lstm_size in (("mine", 32), ("other", 24)):  # two runs, both killed after step 30
        with dying_after_checkpoint(3), pytest.raises(Killed):
            train(tiny_params(epochs=2, lstm_size=lstm_size), train_ids, val_ids, vocab, tmp_path / folder)
    mine, other = tmp_path / "mine" / "best.pt", tmp_path / "other" / "best.pt"
    assert checkpoint.load(mine)["step"] == checkpoint.load(other)["step"] == 30  # the step last.pt names
    other.replace(mine)
    capsys.readouterr()
    metrics, _ = train(tiny_params(epochs=2), train_ids, val_ids, vocab, tmp_path / "mine")
    assert f"{mine} is missing or from another run; training afresh" in capsys.readouterr().out
    assert metrics["steps"] == 78 and checkpoint.load(mine)["model_config"]["lstm_size"] == 32


def test_changed_params_or_code_start_afresh_and_say_why(tmp_path, monkeypatch, capsys):
    train_ids, val_ids, vocab = tiny_corpus()
    with dying_after_checkpoint(2), pytest.raises(Killed):
        train(tiny_params(epochs=1), train_ids, val_ids, vocab, tmp_path)
    train(tiny_params(epochs=1, lstm_size=24), train_ids, val_ids, vocab, tmp_path)
    out = capsys.readouterr().out
    assert (
        f"not resuming the unfinished run in {tmp_path / 'last.pt'} (step 20 of 39): changed since: params "
        "lstm_size; training afresh" in out
    )
    assert checkpoint.load(tmp_path / "best.pt")["model_config"]["lstm_size"] == 24

    with dying_after_checkpoint(2), pytest.raises(Killed):
        train(tiny_params(epochs=1), train_ids, val_ids, vocab, tmp_path)
    edited = tmp_path / "edited"  # the package as it is after a one-line edit of core/model.py
    shutil.copytree(modules.PACKAGE_DIR, edited)
    (edited / "core" / "model.py").write_text((edited / "core" / "model.py").read_text() + "# a comment\n")
    monkeypatch.setattr(modules, "PACKAGE_DIR", edited)
    capsys.readouterr()
    metrics, history = train(tiny_params(epochs=1), train_ids, val_ids, vocab, tmp_path)
    assert "changed since: code core/model.py; training afresh" in capsys.readouterr().out
    assert history[0]["step"] == 10 and metrics["steps"] == 39


def test_a_finished_run_is_completed_from_last_pt_not_trained_again(tmp_path, monkeypatch, capsys):
    """Whatever failed after the loop (the disk, the tracking server), a rerun with the same params,
    data and code completes from the finished run in last.pt: its metrics and history, its best.pt."""
    train_ids, val_ids, vocab = tiny_corpus()
    p = tiny_params(epochs=1)
    first, first_history = train(p, train_ids, val_ids, vocab, tmp_path)
    best = (tmp_path / "best.pt").read_bytes()
    capsys.readouterr()
    monkeypatch.setattr(train_module, "train_step", lambda *args: pytest.fail("trained again"))
    again, again_history = train(p, train_ids, val_ids, vocab, tmp_path)
    assert (
        f"{tmp_path / 'last.pt'} holds the finished run of these params, data and code: completing it, nothing to train"
    ) in capsys.readouterr().out
    assert (again, again_history) == (first, first_history) and (tmp_path / "best.pt").read_bytes() == best
    monkeypatch.undo()
    # other params: a new run, from step 0
    again, _ = train(tiny_params(epochs=1, seed=7), train_ids, val_ids, vocab, tmp_path)
    assert (
        "not resuming the finished run in" in capsys.readouterr().out
        and again["best_val_loss"] != first["best_val_loss"]
    )


def test_chars_per_sec_counts_the_time_before_an_interrupt(tmp_path, monkeypatch):
    train_ids, val_ids, vocab = tiny_corpus()
    p = tiny_params(epochs=1, eval_every=39)  # one validation, at the end
    real_step = train_module.train_step

    def slow_step_then_interrupt(*args):
        time.sleep(0.05)
        result = real_step(*args)
        if len(slow) == 30:
            signal.raise_signal(signal.SIGINT)
        slow.append(1)
        return result

    slow = []
    monkeypatch.setattr(train_module, "train_step", slow_step_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        train(p, train_ids, val_ids, vocab, tmp_path)
    monkeypatch.undo()
    metrics, _ = train(p, train_ids, val_ids, vocab, tmp_path)  # the last 8 steps, fast
    # 31 steps took at least 0.05 s each before the interrupt: all 39 steps' characters took at least 1.55 s
    # (the 8 steps after the resume alone run at tens of thousands of chars/s)
    assert metrics["chars_per_sec"] <= 39 * 8 * 16 / 1.55


def test_divergence_stops_with_a_clear_error_and_keeps_best(tmp_path, monkeypatch):
    class Diverging(train_module.CharRNN):
        """Its training forward passes turn to NaN after step 15, as an exploding model's do."""

        steps = 0

        def forward(self, ids, state=None):
            logits, state = super().forward(ids, state)
            if self.training:
                Diverging.steps += 1
                if Diverging.steps > 15:
                    logits = logits * float("nan")
            return logits, state

    monkeypatch.setattr(train_module, "CharRNN", Diverging)
    train_ids, val_ids, vocab = tiny_corpus()
    with pytest.raises(
        CharRNNError, match="training diverged at step 20 .* lower learning_rate .*best.pt keeps step 10"
    ):
        train(tiny_params(epochs=1), train_ids, val_ids, vocab, tmp_path)
    assert checkpoint.load(tmp_path / "best.pt")["step"] == 10
    assert checkpoint.load(tmp_path / "last.pt")["step"] == 10


def test_fewer_characters_than_one_batch_is_a_clear_error(tmp_path):
    train_ids, val_ids, vocab = tiny_corpus()
    p = tiny_params()  # one batch: 8 x 16 + 1 characters
    with pytest.raises(CharRNNError, match="the train split has 128 characters, fewer than one batch"):
        train(p, train_ids[:128], val_ids, vocab, tmp_path)
    metrics, _ = train(dataclasses.replace(p, epochs=1), train_ids[:129], val_ids, vocab, tmp_path)
    assert metrics["steps"] == 1


def test_learning_rate_schedules():
    p = tiny_params(learning_rate=0.01, min_lr=0.001, warmup_steps=10)
    assert learning_rate(0, 110, p) == pytest.approx(0.001)
    assert learning_rate(9, 110, p) == pytest.approx(0.01)
    assert learning_rate(10, 110, p) == pytest.approx(0.01)
    assert learning_rate(60, 110, p) == pytest.approx(0.0055)
    assert learning_rate(110, 110, p) == pytest.approx(0.001)
    assert learning_rate(80, 110, dataclasses.replace(p, lr_schedule="constant")) == 0.01


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(CharRNNError, match="no CUDA GPU is available"):
        pick_device("cuda")
    assert pick_device("auto") == "cpu"


@pytest.mark.parametrize("bf16_kernels", [True, False])
def test_auto_precision_is_bf16_only_where_the_cpu_has_bf16_kernels(monkeypatch, bf16_kernels):
    monkeypatch.setattr(device_module, "has_bf16_kernels", lambda device_type: bf16_kernels)
    assert resolve_precision("cpu", "auto") == ("bf16" if bf16_kernels else "fp32")
    assert resolve_precision("cpu", "fp32") == "fp32"
    if bf16_kernels:
        assert resolve_precision("cpu", "bf16") == "bf16"
    else:
        with pytest.raises(CharRNNError, match="precision is bf16, but this CPU has no bf16 kernels.*auto or fp32"):
            resolve_precision("cpu", "bf16")


def test_auto_threads_share_the_cpus_among_the_projects_queue_workers(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    cpus = len(os.sched_getaffinity(0))
    queue = os.path.join(tmp_path, ".dvc", "tmp", "exps", "celery")
    node = f"dvc-exp-{hashlib.sha256(queue.encode()).hexdigest()[:6]}"
    # processes named as `dvc queue start -j 2` names its workers (another project's worker beside them)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)", "exp", "queue-worker", f"{name}-{n}@localhost"]
        )
        for name, n in ((node, 1), (node, 2), ("dvc-exp-000000", 1))
    ]
    try:
        assert dvc_exp.queue_workers(tmp_path) == 2
        assert device_module.auto_threads() == max(1, cpus // 3)  # a plain dvc repro beside the two
        queued_run = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc"  # where DVC runs a queued experiment
        queued_run.mkdir(parents=True)
        monkeypatch.chdir(queued_run)
        assert device_module.auto_threads() == max(1, cpus // 2)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert device_module.use_threads("auto") == 1 == torch.get_num_threads()
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        torch.set_num_threads(cpus)
    assert dvc_exp.queue_workers(tmp_path) == 0
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert device_module.auto_threads() == cpus and device_module.use_threads(1) == 1 == torch.get_num_threads()
    torch.set_num_threads(cpus)


def test_more_threads_than_cpus_are_capped_with_a_warning(monkeypatch, capsys):
    cpus = len(os.sched_getaffinity(0))
    try:
        assert device_module.use_threads(cpus + 62) == cpus == torch.get_num_threads()
        assert (
            f"warning: threads {cpus + 62} is more than the {cpus} CPUs this process may use: computing with {cpus}"
            in (capsys.readouterr().err)
        )
        monkeypatch.setenv("OMP_NUM_THREADS", "999")
        assert device_module.use_threads("auto") == cpus == torch.get_num_threads()
        assert "warning: OMP_NUM_THREADS=999 is more than the" in capsys.readouterr().err
        assert device_module.use_threads(cpus) == cpus and capsys.readouterr().err == ""  # as many as CPUs: no word
    finally:
        torch.set_num_threads(cpus)


def test_bad_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CharRNNError, match="not found"):
        checkpoint.load(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CharRNNError, match="junk.pt is not a readable checkpoint \\(corrupt or not a torch file"):
        checkpoint.load(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CharRNNError, match="is not a charrnn checkpoint"):
        checkpoint.load(tmp_path / "other.pt")
    torch.save({"format": checkpoint.FORMAT, "code": Killed()}, tmp_path / "pickled.pt")
    with pytest.raises(
        CharRNNError, match="holds pickled Python objects \\(helpers.training.Killed\\), which are never loaded"
    ):
        checkpoint.load(tmp_path / "pickled.pt")  # weights_only refuses to unpickle objects
    # torch's long reasons are shortened between words (they were cut mid-word)
    reason = checkpoint._why_unreadable(RuntimeError("abcdefgh " * 40))
    assert reason.endswith("abcdefgh ...") and len(reason) < 200


def test_a_checkpoint_claiming_another_model_is_refused_before_it_is_built(tmp_path):
    """A small file whose config claims a huge model (or whose config, vocab or weights are not what
    they should be) is one error, found before anything of the model's size is allocated."""
    train_ids, val_ids, vocab = tiny_corpus()
    train(tiny_params(epochs=1), train_ids, val_ids, vocab, tmp_path)
    good = checkpoint.load(tmp_path / "best.pt")
    cases = {
        "huge": (
            {**good, "model_config": {**good["model_config"], "lstm_size": 12_000}},
            "weights do not fit the model config",
        ),
        "config_list": ({**good, "model_config": [1, 2]}, "its model_config is missing or malformed"),
        "no_config": ({key: value for key, value in good.items() if key != "model_config"}, "missing or malformed"),
        "vocab_text": ({**good, "vocab": "abc"}, "missing or malformed"),
        "weights_list": ({**good, "model_state": [1]}, "its model_state is missing or not a set of named tensors"),
        "config_text": ({**good, "model_config": {**good["model_config"], "lstm_size": "big"}}, "model_config is"),
    }
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for name, (payload, message) in cases.items():
        torch.save(payload, tmp_path / f"{name}.pt")
        with pytest.raises(CharRNNError, match=re.escape(message)):
            checkpoint.load_model(tmp_path / f"{name}.pt")
    # a 1x12000 LSTM would take 2.3 GB: the peak of this process grew by far less
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before < 500_000  # KiB


def test_every_reader_of_a_fuzzed_checkpoint_works_or_says_why_in_one_line(tmp_path):
    """Tampered fields and flipped bytes in a last.pt: each reader (load_model, the later stages'
    run_checkpoints, compare's heading, the play page's facts, the logged model's name, a resume) either
    works or raises CharRNNError. A probe had 47 of 564 fuzzed files fail with IndexError or KeyError."""
    import random

    from charrnn.commands import compare
    from charrnn.core.model import CharRNN
    from charrnn.play.catalogue import _facts_of
    from charrnn.tracking.runs import label
    from charrnn.training import run as run_module

    train_ids, val_ids, vocab = tiny_corpus()
    train(tiny_params(epochs=1), train_ids, val_ids, vocab, tmp_path / "run")
    source = (tmp_path / "run" / "last.pt").read_bytes()
    good = checkpoint.load(tmp_path / "run" / "last.pt")
    odd_values = (None, "x", -1, 2**70, 1.5, True, [], {}, ["ab"], {"x": 1})
    payloads = [{key: value for key, value in good.items() if key != drop} for drop in good]
    payloads += [{**good, key: value} for key in good for value in odd_values]
    for section in ("vocab", "model_config", "run"):
        payloads += [{**good, section: {**good[section], key: value}} for key in good[section] for value in odd_values]
    payloads += [{**good, "vocab": {**good["vocab"], "chars": chars}} for chars in (["ab", *"cd"], [*"aab"], [])]
    payloads += [{**good, "rank_states": [{**good["rank_states"][0], "rng": torch.zeros(3)}]}]
    files = []
    for number, payload in enumerate(payloads):
        torch.save(payload, tmp_path / f"fields{number}.pt")
        files.append(tmp_path / f"fields{number}.pt")
    rng = random.Random(0)
    for number in range(150):
        data = bytearray(source)
        for _ in range(4):
            data[rng.randrange(len(data))] = rng.randrange(256)
        (tmp_path / f"bytes{number}.pt").write_bytes(bytes(data))
        files.append(tmp_path / f"bytes{number}.pt")

    model = CharRNN.from_params(len(vocab), tiny_params())
    optimizer = torch.optim.Adam(model.parameters())

    def resume(path):
        folder = tmp_path / "resume"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        shutil.copyfile(tmp_path / "run" / "best.pt", folder / "best.pt")
        shutil.copyfile(path, folder / "last.pt")
        saver = Checkpointer(folder, model, optimizer, vocab, good["fingerprint"], 0)
        run_module.start(saver, good["run"]["total_steps"], True, "cpu", lambda line: None)

    def later_stages(path):
        shutil.rmtree(tmp_path / "later", ignore_errors=True)
        (tmp_path / "later" / "checkpoints").mkdir(parents=True)
        shutil.copyfile(path, tmp_path / "later" / "best.pt")
        shutil.copyfile(path, tmp_path / "later" / "checkpoints" / "kept.pt")
        checkpoint.run_checkpoints(tmp_path / "later", say=lambda line: None)

    def model_name(path):
        payload = checkpoint.load(path)
        return label(payload["vocab"]["corpus"], payload["model_config"])

    readers = {
        "load_model": checkpoint.load_model,
        "run_checkpoints": later_stages,
        "compare": lambda path: compare.load(str(path)),
        "play facts": lambda path: _facts_of(checkpoint.load(path)),
        "model name": model_name,
        "resume": resume,
    }
    failures = []
    for path in files:
        for name, read in readers.items():
            try:
                read(path)
            except CharRNNError as err:
                assert "\n" not in str(err), (path.name, name, str(err))
            except Exception as err:  # noqa: BLE001 (any other is the defect looked for)
                failures.append(f"{path.name} {name}: {type(err).__name__}: {str(err)[:80]}")
    assert not failures, f"{len(failures)} of {len(files) * len(readers)}:\n" + "\n".join(failures[:30])


def test_a_model_too_large_for_the_memory_is_refused_before_it_is_built():
    """A huge lstm_size was the allocator's traceback (or, at sizes that fit the weights, a training the
    system killed when its memory ran out); the count it is judged by is the model's own."""
    from charrnn.core.model import CharRNN, parameter_count

    for config in (
        dict(cell="lstm", lstm_size=32, num_layers=2, embedding_size=0, dropout=0.1),
        dict(cell="gru", lstm_size=48, num_layers=3, embedding_size=16, dropout=0.0),
        dict(cell="rnn", lstm_size=8, num_layers=1, embedding_size=0, dropout=0.0),
    ):
        assert parameter_count(65, **config) == CharRNN(65, **config).num_params(), config
    train_ids, val_ids, vocab = tiny_corpus()
    with pytest.raises(CharRNNError, match=r"^a 2x1000000 lstm model of [\d,]+ parameters needs about [\d,.]+ GiB"):
        train(tiny_params(lstm_size=1_000_000, num_layers=2), train_ids, val_ids, vocab, "unused")


def test_a_checkpoint_write_on_a_full_disk_is_one_error_and_keeps_the_earlier_file(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("a small tmpfs is needed for a real full disk, and only root may mount one here")
    try:
        checkpoint.save(disk / "best.pt", {"format": checkpoint.FORMAT, "weights": torch.zeros(1000)})
        with pytest.raises(CharRNNError, match="^no space left on the device writing .*best.pt: free some"):
            checkpoint.save(disk / "best.pt", {"format": checkpoint.FORMAT, "weights": torch.zeros(100_000)})
        assert torch.load(disk / "best.pt", weights_only=True)["weights"].shape == (1000,)
        assert [path.name for path in disk.iterdir()] == ["best.pt"]  # no temp file left
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=True)  # lazy: an open file cannot keep it


def test_the_later_stages_adopt_only_the_checkpoints_of_best_pts_run(tmp_path):
    """log_models and sample take models/checkpoints/ through run_checkpoints: a file copied in from another
    run, or one without a run id of another vocabulary, is left out with a line."""
    train_ids, val_ids, vocab = tiny_corpus()
    train(tiny_params(epochs=1, keep_checkpoints=10), train_ids, val_ids, vocab, tmp_path / "mine")
    train(tiny_params(epochs=1, keep_checkpoints=10, seed=7), train_ids, val_ids, vocab, tmp_path / "other")
    own = sorted((tmp_path / "mine" / "checkpoints").glob("*.pt"))
    kept = tmp_path / "mine" / "checkpoints"
    shutil.copy(sorted((tmp_path / "other" / "checkpoints").glob("*.pt"))[0], kept / "i5_l32_v9.9999.pt")
    older = torch.load(own[0], weights_only=True)  # as a checkpoint without a run id, of another corpus
    del older["run_id"]
    older["vocab"] = {**older["vocab"], "corpus": "hamlet", "sha256": "f" * 64}
    torch.save(older, kept / "i7_l32_v9.9999.pt")
    said = []
    found = checkpoint.run_checkpoints(tmp_path / "mine", say=said.append)
    assert list(found) == [*own, tmp_path / "mine" / "best.pt"]
    assert said == [
        f"leaving out {kept / name}: a checkpoint of another training run than {tmp_path / 'mine' / 'best.pt'}"
        for name in ("i5_l32_v9.9999.pt", "i7_l32_v9.9999.pt")
    ]


@pytest.mark.parametrize("broken", ["best.pt", "last.pt"])
def test_a_truncated_checkpoint_stops_the_resume_and_the_other_survives(tmp_path, monkeypatch, broken):
    train_ids, val_ids, vocab = tiny_corpus()
    p = tiny_params(epochs=1)
    with dying_after_checkpoint(2), pytest.raises(Killed):
        train(p, train_ids, val_ids, vocab, tmp_path)
    data = (tmp_path / broken).read_bytes()
    (tmp_path / broken).write_bytes(data[: len(data) // 2])
    other = tmp_path / ({"best.pt", "last.pt"} - {broken}).pop()
    kept = other.read_bytes()
    with pytest.raises(
        CharRNNError,
        match=f"{broken} is not a readable checkpoint \\(corrupt or truncated: .*"
        f"restore it \\(`dvc checkout .*{broken}`\\), or delete it",
    ):
        train(p, train_ids, val_ids, vocab, tmp_path)
    assert other.read_bytes() == kept  # a fresh run did not overwrite the good one
    (tmp_path / broken).unlink()
    metrics, _ = train(p, train_ids, val_ids, vocab, tmp_path)  # the fix the message names works
    assert metrics["steps"] == 39


@pytest.mark.slow
def test_two_process_gloo_data_parallel_training_on_one_node_and_on_two(tmp_path, mirror):
    import json
    import os
    import subprocess
    import sys

    import numpy as np
    from mlflow import MlflowClient

    from helpers import ROOT
    from helpers.configs import PIPELINE
    from helpers.running import run_stage
    from helpers.servers import free_port

    one_node = tmp_path / "one-node"
    one_node.mkdir()
    prepare(one_node, mirror, **{**PIPELINE, "processes": 2, "keep_checkpoints": 0, "epochs": 2})
    nodes = [shutil.copytree(one_node, tmp_path / f"node-{name}") for name in "ab"]  # each node's own checkout
    result = run_stage("train", one_node)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "2 processes" in result.stdout and result.stdout.count("model: ") == 1  # rank 0 alone reports

    train_chars = len(np.load(one_node / "data/split/train.npy"))
    per_rank = train_chars // 2
    metrics = json.loads((one_node / "metrics/train.json").read_text())
    assert metrics["steps"] == 2 * (((per_rank - 1) // 32) // 32)  # each rank: its own shard, same steps
    rows = (one_node / "plots/train/loss.csv").read_text().splitlines()
    assert float(rows[-1].split(",")[1]) < float(rows[1].split(",")[1]) - 0.3  # the loss falls
    client = MlflowClient(f"sqlite:///{one_node}/mlruns/mlflow.db")
    assert len(client.search_runs([client.get_experiment_by_name("charrnn-hamlet").experiment_id])) == 1
    assert sorted(p.name for p in (one_node / "models").iterdir()) == [
        "best.pt",
        "checkpoints",
        "last.pt",
        "mlflow_run.json",
    ]
    assert len(checkpoint.load(one_node / "models/last.pt")["rank_states"]) == 2

    # the same run across two "nodes" on 127.0.0.1: two launchers, one process each, a c10d rendezvous
    # (docs/training.md's command per node); global rank 0 writes, on whichever node torchrun gave it
    endpoint = f"127.0.0.1:{free_port()}"
    launchers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nnodes=2",
                "--nproc_per_node=1",
                "--rdzv_backend=c10d",
                f"--rdzv_endpoint={endpoint}",
                "--rdzv_id=charrnn",
                str(ROOT / "stages" / "train.py"),
            ],
            cwd=node,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        for node in nodes
    ]  # as torchrun set it for the 2 processes above
    outputs = [launcher.communicate(timeout=300)[0] for launcher in launchers]
    assert [launcher.returncode for launcher in launchers] == [0, 0], outputs
    [writer] = [node for node in nodes if (node / "metrics/train.json").exists()]
    assert not any((node / "models").exists() for node in nodes if node != writer)
    assert (writer / "plots/train/loss.csv").read_text() == (one_node / "plots/train/loss.csv").read_text()
    two_nodes = json.loads((writer / "metrics/train.json").read_text())
    assert {**two_nodes, "chars_per_sec": 0} == {**metrics, "chars_per_sec": 0}  # the same losses, bit for bit
