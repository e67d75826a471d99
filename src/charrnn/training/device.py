"""Where and in what precision the model runs: the device (`auto` = CUDA when present) and bf16 or fp32."""

from contextlib import nullcontext

import torch

from charrnn import sampling_rules
from charrnn.errors import CharRNNError


def pick_device(name):
    """'auto' is CUDA when a GPU is present, else the CPU; 'cuda' without a GPU is an error."""
    cuda = torch.cuda.is_available()
    if name == "auto":
        return "cuda" if cuda else "cpu"
    if name == "cuda" and not cuda:
        raise CharRNNError("device is 'cuda' but no CUDA GPU is available here (use device: auto or cpu)")
    return name


def resolve_precision(device, precision):
    """'auto' is bf16 where the device has bf16 kernels, else fp32; bf16 where it has none is an error."""
    device_type = torch.device(device).type
    if precision == "auto":
        return "bf16" if has_bf16_kernels(device_type) else "fp32"
    if precision == "bf16":
        require_bf16_kernels(device_type, "precision: auto or fp32")
    return precision


def require_bf16_kernels(device_type, alternatives):
    """Raise no_bf16_error() unless the device has bf16 kernels."""
    if not has_bf16_kernels(device_type):
        raise no_bf16_error(device_type, alternatives)


def no_bf16_error(device_type, alternatives):
    """The one error for bf16 asked of a device without bf16 kernels, naming the `alternatives`."""
    which = "GPU" if device_type == "cuda" else "CPU"
    capability = "" if device_type == "cuda" else f" (CPU capability {torch.backends.cpu.get_cpu_capability()})"
    return CharRNNError(f"precision is bf16, but this {which} has no bf16 kernels{capability}: use {alternatives}")


def generation_precision(precision, device, cell="lstm"):
    """sampling_rules.generation_precision on this device: its bf16 kernels, its error without them."""
    device_type = torch.device(device).type
    return sampling_rules.generation_precision(precision, cell, device_type, has_bf16_kernels(device_type),
                                               lambda alternatives: no_bf16_error(device_type, alternatives))


def precision_context(device, precision):
    """bf16 autocast on the device's type (the loss and optimizer stay fp32), or nothing for fp32."""
    if resolve_precision(device, precision) != "bf16":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def has_bf16_kernels(device_type):
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    # oneDNN's bf16 RNN kernels need AVX512 (AVX512-BF16 or AMX to be fast); on AVX2 CPUs they fail
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
