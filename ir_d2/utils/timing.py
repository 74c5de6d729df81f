"""Timing and size of models, shared by the analysis tool and the benchmark scripts."""

import time

import torch

__all__ = ["time_call", "time_calls", "count_parameters"]


def time_call(fn, warmup: int = 2, repeat: int = 5) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` calls after ``warmup`` calls,
    synchronising CUDA around each call when it is available."""
    times = time_calls(fn, warmup, repeat)
    return times[len(times) // 2]


def time_calls(fn, warmup: int = 2, repeat: int = 5) -> list:
    """The sorted wall times of ``repeat`` calls of ``fn()`` in seconds, after ``warmup`` calls,
    synchronising CUDA around each call when it is available."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())
