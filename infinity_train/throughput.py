"""Throughput figures: the accelerator's peak for model FLOPs utilization (MFU) and peak memory."""

from __future__ import annotations

import resource
import sys

import torch

PEAK_BF16_TFLOPS = {  # dense bf16 tensor-core peak per device
    "H100": 989.0,
    "H200": 989.0,
    "A100": 312.0,
}


def peak_tflops(device: torch.device) -> float | None:
    """The bf16 dense peak of this GPU model, or None (CPUs and unknown GPUs report no MFU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for model, peak in PEAK_BF16_TFLOPS.items():
        if model in name:
            return peak
    return None


def peak_memory_gb(device: torch.device) -> float:
    """Peak allocated GPU memory on CUDA; the process's peak resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**30 if sys.platform == "darwin" else 2**20)
