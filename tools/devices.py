"""Devices and dtypes: CUDA (by free memory), then MPS, then CPU; half precision on GPUs."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

log = logging.getLogger("vischain.models")


@dataclass(frozen=True)
class DeviceInfo:
    name: str  # "cuda:0", "mps", "cpu"
    total_bytes: int
    free_bytes: int

    @property
    def kind(self) -> str:
        return self.name.split(":")[0]


def _cpu_memory() -> tuple[int, int]:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if ":" in line}
        return info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))
    except OSError:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return pages, pages // 2


def list_devices(allowed: list[str] | str = "auto") -> list[DeviceInfo]:
    """Usable devices, best first: CUDA devices by free memory, then MPS, then the CPU."""
    found: list[DeviceInfo] = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            found.append(DeviceInfo(f"cuda:{i}", total, free))
        found.sort(key=lambda d: d.free_bytes, reverse=True)
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        total, free = _cpu_memory()  # unified memory
        found.append(DeviceInfo("mps", total, free))
    total, free = _cpu_memory()
    found.append(DeviceInfo("cpu", total, free))
    if allowed != "auto":
        wanted = [allowed] if isinstance(allowed, str) else list(allowed)
        found = [d for d in found if d.name in wanted or d.kind in wanted]
        if not found:
            raise ValueError(f"none of the configured devices {wanted} is available")
    return found


def dtype_for(device: str, requested: str = "auto") -> torch.dtype:
    """fp32 on CPU; bf16 on CUDA when supported, else fp16; fp16 on MPS. An explicit
    ``requested`` dtype ("float16", "bfloat16", "float32") wins."""
    if requested != "auto":
        value = getattr(torch, requested, None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown dtype {requested!r}")
        return value
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        major, _ = torch.cuda.get_device_capability(index)
        return torch.bfloat16 if major >= 8 else torch.float16
    if device == "mps":
        return torch.float16
    return torch.float32


def dtype_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def module_bytes(module: object) -> int:
    """Bytes held by a module's parameters and buffers (0 for non-torch objects)."""
    if not isinstance(module, torch.nn.Module):
        return 0
    total = sum(p.numel() * p.element_size() for p in module.parameters())
    total += sum(b.numel() * b.element_size() for b in module.buffers())
    return total


def configure_attention(device: str, *, cudnn: bool) -> None:
    """Choose the attention kernels for a model placed on ``device``. On CUDA, cuDNN's
    scaled-dot-product attention builds an execution plan per thread and per shape: with
    the dynamic shapes of batched decoding that cost 1.5-2.2 s per six-question LLaVA call
    on an H100, against 0.13-0.20 s with it off (flash / memory-efficient kernels, no
    plans); see bench/gpu/README.md. ``cudnn=False`` turns it off process-wide."""
    if device.startswith("cuda") and not cudnn:
        torch.backends.cuda.enable_cudnn_sdp(False)
