"""Training proper: the loop, the run's state with its checkpoints and resume, and DDP. It stands on the
model core (charrnn.core) and the data, and never imports generation, serving, tracking or the commands
(tests/test_layout.py checks it): an edit of those never retrains a model.
"""
