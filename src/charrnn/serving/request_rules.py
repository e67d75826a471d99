"""What one request to a charrnn server may ask for: the served model (pyfunc.py) and the play page
(charrnn play) alike. Each option's rule is params.yaml's `sample.<option>` (the CLI's flags: one set
of rules), and a request stays within these bounds, about 10 s of one CPU core for a 2x512 model.
"""

import math

from charrnn.errors import CharRNNError
from charrnn.params import SCHEMA, check_value

MAX_ROWS = 64  # texts written by one request of the served model (the play page has its own MAX_MODELS)
MAX_PRIME = 10_000  # characters of a prime
MAX_LENGTH = 10_000  # characters to write in one text
MAX_TOTAL_LENGTH = 20_000  # characters to write in the whole request
OPTIONS = {"length": 200, "temperature": 1.0, "top_k": 5, "top_p": 1.0, "seed": 0}  # the default of each option


def default_top_k(vocab_size):
    """The top_k of a request that gives none: OPTIONS' default, at most the vocabulary's size (a corpus
    of 4 characters would refuse 5)."""
    return min(OPTIONS["top_k"], vocab_size)


def checked_option(name, value, where=""):
    """`value` of the option `name` (prime, precision or one of OPTIONS) by params.yaml's rule for sample.<name>,
    as a plain value; `where` prefixes the error (e.g. "row 2: ")."""
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()  # a numpy scalar of a DataFrame
    if name == "top_k" and isinstance(value, float) and math.isnan(value):
        value = None  # null in a numeric column: off, as in params.yaml
    if SCHEMA[f"sample.{name}"].kind is int and isinstance(value, float) and value.is_integer():
        value = int(value)  # a whole number in a column that a null made float; 1.5 stays refused
    try:
        return check_value(f"sample.{name}", value, "request")
    except CharRNNError:
        raise CharRNNError(f"{where}{name} must be {SCHEMA[f'sample.{name}'].rule} (got {value!r})") from None


def check_count(count):
    """Refuse a request for no row or more than MAX_ROWS, before any of them is read."""
    if not 1 <= count <= MAX_ROWS:
        raise CharRNNError(f"a request has 1 to {MAX_ROWS} rows (got {count})")


def check_bounds(texts):
    """Refuse a request whose `texts` (dicts with the checked `prime` and `length` of each text to
    write) ask for more characters than the bounds allow; name the text when there are several."""
    for number, text in enumerate(texts, 1):
        where = f"row {number}: " if len(texts) > 1 else ""
        if len(text["prime"]) > MAX_PRIME:
            raise CharRNNError(
                f"{where}the prime has {len(text['prime']):,} characters, over the limit of {MAX_PRIME:,} per prime"
            )
        if text["length"] > MAX_LENGTH:
            raise CharRNNError(
                f"{where}length {text['length']:,} is over the limit of {MAX_LENGTH:,} characters per text"
            )
    total = sum(text["length"] for text in texts)
    if total > MAX_TOTAL_LENGTH:
        raise CharRNNError(
            f"the request asks for {total:,} characters in all, over the limit of {MAX_TOTAL_LENGTH:,} per request"
        )
