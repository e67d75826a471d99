"""Training: the model, its checkpoint file format, the evaluation protocol, the device and precision,
DDP, the run (state, checkpoints, resume) and the loop. It never imports generation, serving, tracking
or the commands (tests/test_layout.py checks it): an edit of those never retrains a model.
"""
