"""A stage keeps freed memory for reuse: a large buffer allocated again and again is not faulted in
afresh each time; a server gives it back (charrnn/memory.py)."""

import subprocess
import sys

import pytest

REUSE = """
import resource, sys
{setup}
import torch
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):  # 64 MB, as a training step's activations; the heap settles after a few steps
    torch.empty(16 << 20).fill_(1.0)
before = faults()
for _ in range(10):
    torch.empty(16 << 20).fill_(1.0)
print((faults() - before) // 10)
"""


def faults_per_buffer(setup):
    result = subprocess.run(
        [sys.executable, "-c", REUSE.format(setup=setup)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings: Linux only")
def test_a_stage_reuses_a_large_buffer_and_a_server_gives_it_back():
    pages = (64 << 20) // 4096
    assert faults_per_buffer("") > pages // 2  # plain Python: unmapped when freed, faulted in again
    assert faults_per_buffer("from charrnn.dvc_exp import stage; stage(lambda: None)()") < pages // 20
    # what a served model and charrnn's servers import: freed memory goes back to the system (the
    # setting on import kept 1.66 GB in use after a 400 MB request body)
    served = "import charrnn.serving.pyfunc, charrnn.servers, charrnn.commands.serve, charrnn.commands.play"
    assert faults_per_buffer(served) > pages // 2
