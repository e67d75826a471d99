"""The served model (the MLflow pyfunc, in this process): precision, admission, refusals and bounds."""

import re
import time
from types import SimpleNamespace

import pandas as pd
import pytest

from charrnn.generation.steppers import generation_precision as resolve


def test_the_served_model_takes_a_precision(trained):
    from mlflow.exceptions import MlflowException

    from charrnn.serving.pyfunc import CharRNNModel

    served = CharRNNModel()
    served.load_context(SimpleNamespace(artifacts={"checkpoint": str(trained[2] / "best.pt")}))
    rows = pd.DataFrame({"prime": ["the", "the"], "length": [150, 150], "seed": [1, 1]})
    int8 = served.predict(None, rows, params={"precision": "int8"})
    assert int8[0] == int8[1] and int8 == served.predict(None, rows, params={"precision": "int8"})
    assert served.predict(None, rows) == served.predict(None, rows, params={"precision": resolve("auto", "cpu")})
    with pytest.raises(MlflowException, match="precision must be one of"):
        served.predict(None, rows, params={"precision": "fp16"})


def test_the_served_model_computes_the_smallest_request_first_refuses_a_crowd_and_stops_past_the_timeout(trained):
    """turns.py on the real served model, its requests in threads as MLflow's server runs them."""
    import threading

    from mlflow.exceptions import MlflowException

    from charrnn.serving import turns as turns_module
    from charrnn.serving.pyfunc import CharRNNModel

    served = CharRNNModel()
    served.load_context(SimpleNamespace(artifacts={"checkpoint": str(trained[2] / "best.pt")}))
    served.turns = turns_module.Turns(max_large=1)
    large = pd.DataFrame({"prime": ["the", "the"], "length": [10_000, 10_000]})
    done, errors = [], []

    def ask(name, rows):
        try:
            served.predict(None, rows)
            done.append(name)
        except MlflowException as err:
            errors.append((name, err))

    first = threading.Thread(target=ask, args=("large", large))
    first.start()
    deadline = time.monotonic() + 60
    while served.turns._computing is None:  # the large request computes
        assert first.is_alive() and time.monotonic() < deadline, errors
        time.sleep(0.001)
    ask("crowd", large)  # a second large one while the first is in flight: refused at once
    small = threading.Thread(target=ask, args=("small", pd.DataFrame({"prime": ["the"], "length": [20]})))
    small.start()
    small.join()
    assert first.is_alive() and done == ["small"]  # the small one ended while the large one computes
    first.join()
    assert done == ["small", "large"]
    [(name, busy)] = errors
    assert name == "crowd" and busy.get_http_status_code() == 429 and "the server is busy" in busy.message

    served.turns = turns_module.Turns(timeout=0.5)  # past the server's timeout (it answered 504): stop
    started = time.monotonic()
    with pytest.raises(MlflowException, match="took longer than the server's timeout"):
        served.predict(None, large)
    assert time.monotonic() - started < 5
    assert served.turns._computing is None and served.turns.large_in_flight == 0  # nothing left held
    assert served.turns.rate > 100  # characters per second, measured while it computed
    served.turns.rate = 1_000  # as if the model wrote 1,000 a second: 20,006 take longer than 0.1 s
    with pytest.raises(MlflowException, match="20,006 characters to write with this request's, more than it writes"):
        served.predict(None, large)


def test_one_slow_slice_does_not_make_the_server_refuse_large_requests():
    """The speed that admits large requests is the slices', newer weighing more: a slice slowed once (a
    thread switch, an event sent between two of its steps) took it from millions to 320 a second."""
    from charrnn.serving.turns import SLICE, Turns

    turns = Turns(timeout=60)
    with turns.request(SLICE * 12) as request:
        for _ in range(SLICE * 10):
            request.step()
        fast = turns.rate
        time.sleep(0.05)
        for _ in range(SLICE):
            request.step()
    assert turns.rate > fast / 2


def test_the_served_model_refuses_what_the_cli_refuses_and_bounds_a_request(trained):
    from mlflow.exceptions import MlflowException

    from charrnn.serving.pyfunc import CharRNNModel
    from charrnn.serving.request_rules import MAX_PRIME, MAX_ROWS, MAX_TOTAL_LENGTH

    served = CharRNNModel()
    served.load_context(SimpleNamespace(artifacts={"checkpoint": str(trained[2] / "best.pt")}))
    nan, inf = float("nan"), float("inf")
    for rows, message in [
        ({"prime": [None]}, "row 1: prime must be a non-empty text (got None)"),
        ({"prime": [nan]}, "row 1: prime must be a non-empty text (got nan)"),
        ({"prime": [["a", "b"]]}, "row 1: prime must be a non-empty text (got ['a', 'b'])"),
        ({"prime": ["the", "the"], "temperature": [0.5, nan]}, "row 2: temperature must be a finite number >= 0"),
        (
            {"prime": ["the"], "temperature": [inf]},
            "row 1: temperature must be a finite number >= 0 (0 = greedy) (got inf)",
        ),
        ({"prime": ["the"], "seed": [-1]}, "row 1: seed must be an integer from 0 to 4294967295 (got -1)"),
        ({"prime": ["the"], "length": [1.5]}, "row 1: length must be an integer >= 0 (got 1.5)"),
        ({"prime": ["the"], "top_p": [0.0]}, "row 1: top_p must be a number in (0, 1] (1 = off) (got 0.0)"),
        ({"prime": ["the"] * (MAX_ROWS + 1)}, f"a request has 1 to {MAX_ROWS} rows (got {MAX_ROWS + 1})"),
        ({"prime": ["the " * (MAX_PRIME // 4 + 1)]}, f"over the limit of {MAX_PRIME:,} per prime"),
        (
            {"prime": ["the"] * 3, "length": [MAX_TOTAL_LENGTH // 2] * 3},
            f"over the limit of {MAX_TOTAL_LENGTH:,} per request",
        ),
    ]:
        with pytest.raises(MlflowException, match=re.escape(message)) as refused:
            served.predict(None, pd.DataFrame(rows))
        assert refused.value.error_code == "INVALID_PARAMETER_VALUE"
    # null top_k is off, as in params.yaml; the other rows' values are theirs
    texts = served.predict(None, pd.DataFrame({"prime": ["the", "the"], "top_k": [1, None], "length": [30, 30]}))
    assert len(texts) == 2 and all(len(text) == 33 for text in texts)
    # top_p is honoured: a nucleus of the most likely character alone is greedy, as top_k 1 is
    nucleus = served.predict(None, pd.DataFrame({"prime": ["the"], "top_k": [None], "top_p": [1e-9], "length": [30]}))
    assert nucleus == texts[:1]


def test_the_served_model_reads_its_columns_by_its_own_rules(trained, tmp_path):
    """checked_rows is the columns' one schema: an unknown column is refused, the scoring server's other
    shapes of a table (columns as a dict, records as a list) are read alike, and a request without top_k
    gets the default at most the vocabulary's size (a 4-character corpus made every such request a 400)."""
    from mlflow.exceptions import MlflowException

    from charrnn.data.vocab import Vocab
    from charrnn.serving.pyfunc import CharRNNModel
    from charrnn.tracking.logged_models import example_input
    from charrnn.training.loop import train

    from helpers.configs import tiny_params

    served = CharRNNModel()
    served.load_context(SimpleNamespace(artifacts={"checkpoint": str(trained[2] / "best.pt")}))
    with pytest.raises(MlflowException, match=re.escape("unknown column 'lenght': the columns are prime, length,")):
        served.predict(None, pd.DataFrame({"prime": ["the"], "lenght": [5]}))
    table = served.predict(None, pd.DataFrame({"prime": ["the"], "length": [20], "seed": [3]}))
    assert served.predict(None, {"prime": "the", "length": 20, "seed": 3}) == table
    assert served.predict(None, [{"prime": "the", "length": 20, "seed": 3}]) == table
    with pytest.raises(MlflowException, match="the input is a table of prompts"):
        served.predict(None, "the")

    text = "abcd" * 1500
    vocab = Vocab(chars=tuple("abcd"), corpus="four", sha256="0" * 64, origin="file:///four.txt")
    ids = vocab.encode(text)
    train(tiny_params(epochs=1, keep_checkpoints=0), ids[:5000], ids[5000:], vocab, tmp_path)
    four = CharRNNModel()
    four.load_context(SimpleNamespace(artifacts={"checkpoint": str(tmp_path / "best.pt")}))
    [written] = four.predict(None, pd.DataFrame({"prime": ["ab"], "length": [30]}))
    assert len(written) == 32 and set(written) <= set("abcd")
    assert len(four.predict(None, example_input(list(vocab.chars)))[0]) == 103  # log_models' example: "abc"
