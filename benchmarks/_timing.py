"""Interleaved timing shared by the benchmarks: round-robin over configurations, autoranged samples."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence


def calls_per_sample(run: Callable[[], object], min_sample_s: float, clock: Callable[[], float] = time.perf_counter
                     ) -> int:
    """How many calls make one timed sample last at least ``min_sample_s`` (like ``timeit``'s autorange):
    sub-millisecond calls timed one by one mostly measure the clock and cache effects of the switch."""
    t0 = clock()
    run()
    once = max(clock() - t0, 1e-7)
    return max(1, math.ceil(min_sample_s / once))


def round_robin(runs: Sequence[Callable[[], object]], repeats: int, budget_s: float,
                min_sample_s: float = 0.005, clock: Callable[[], float] = time.perf_counter
                ) -> list[tuple[float, int]]:
    """(median seconds per call, samples) of each run, timed in rounds (A B C A B C ...) so machine drift hits all alike.

    A run leaves the rounds once it used ``budget_s`` (after at least 3 samples); the whole loop stops after
    ``budget_s * len(runs)`` seconds (after at least 3 rounds). ``clock=time.thread_time`` measures the CPU time of
    the calling thread instead of wall time: on a machine loaded far beyond its cores, wall time mostly measures
    the scheduler (one-thread runs only: work on other threads is not counted)."""
    numbers = [calls_per_sample(run, min_sample_s, clock) for run in runs]
    samples: list[list[float]] = [[] for _ in runs]
    start = time.perf_counter()
    for r in range(repeats):
        for run, number, times in zip(runs, numbers, samples):
            if r >= 3 and sum(times) * number > budget_s:
                continue
            t0 = clock()
            for _ in range(number):
                run()
            times.append((clock() - t0) / number)
        if r >= 2 and time.perf_counter() - start > budget_s * len(runs):
            break
    return [(statistics.median(times), len(times)) for times in samples]
