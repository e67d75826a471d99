"""Data-parallel training (PyTorch DDP) through torchrun: one process per GPU, or gloo on the CPU.

With `processes: 1` (the default) nothing here does anything. With more, the train stage starts
itself again under torchrun; each rank trains on its own contiguous shard of the train split, the
gradients are averaged, and only rank 0 writes checkpoints, metrics and MLflow.
"""

import os
import sys

import torch
import torch.distributed as dist


def launched():
    """True inside a torchrun-started process group."""
    return "LOCAL_RANK" in os.environ


def is_main():
    """Rank 0 (or no process group): the one process that writes outputs. Known before init()."""
    return int(os.environ.get("RANK", "0")) == 0


def relaunch(processes, script):
    """Run `script` again as `processes` torchrun workers and exit with their status."""
    from torch.distributed.run import main as torchrun

    try:
        torchrun(["--standalone", f"--nproc_per_node={processes}", script, *sys.argv[1:]])
    except Exception:  # torchrun's report of a failed worker; the worker printed its own error line
        sys.exit(1)
    sys.exit(0)


def init(device):
    """Join the process group torchrun set up; returns the device of this rank."""
    if not launched():
        return device
    if device == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return f"cuda:{os.environ['LOCAL_RANK']}" if device == "cuda" else device


def close():
    """Leave the process group at the end of training (PyTorch warns of a group left open at exit)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def shard(ids):
    """This rank's contiguous part of the train split (all parts the same length)."""
    length = len(ids) // world_size()
    return ids[rank() * length : (rank() + 1) * length]


def mean(tensor):
    """The mean of a scalar tensor over all ranks."""
    if dist.is_initialized():
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        tensor /= world_size()
    return tensor


def broadcast(value):
    """Rank 0's `value` (a float, or a checkpoint's contents) on every rank."""
    if not dist.is_initialized():
        return value
    shared = [value]
    dist.broadcast_object_list(shared, src=0)
    return shared[0]


def gather(obj):
    """Every rank's `obj`, in rank order (a one-element list without a process group)."""
    if not dist.is_initialized():
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
