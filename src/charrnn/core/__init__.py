"""The model core every concern uses: the network, its checkpoint file format, the device and
precision, and the evaluation protocol. It imports no training, generation, serving or tracking code
(tests/test_layout.py checks it), so an edit of those never retrains a model."""
