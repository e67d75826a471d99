"""Generation: the sampling options' and the generation precision's rules (torch-free), the
one-character steps in fp32, bf16 and int8, and sampling text from a model."""
