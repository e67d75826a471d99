"""Data: the known corpora and how to get them, the vocabulary, the encoded text, its split and its batches."""
