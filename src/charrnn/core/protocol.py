"""The evaluation protocol's shape and name, without torch (evaluate.py runs it): the registry and the
stages that only compare or record val losses know the protocol by PROTOCOL_ID without loading torch."""

STREAMS, WINDOW = 64, 256
PROTOCOL_ID = f"fp32-s{STREAMS}-w{WINDOW}"


def num_streams(length):
    """Streams the protocol cuts a split of `length` characters into: up to STREAMS, each >= WINDOW long."""
    return max(1, min(STREAMS, (length - 1) // WINDOW))
