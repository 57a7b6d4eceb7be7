"""Timing shared by the PyTorch side-by-side scripts in tools/: the median of timed
calls after one warm-up call, as labelgan's examples measure (examples/common)."""
import time


def median_seconds(step, repeats):
    """Median seconds of `repeats` (at least 1) timed calls of `step`, after one untimed
    warm-up call. On a GPU, `step` must synchronize before it returns."""
    step()
    ts = []
    for _ in range(max(repeats, 1)):
        t = time.perf_counter()
        step()
        ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def seconds_per_step(step, steps, warmup):
    """Mean seconds per call over `steps` (at least 1) timed calls of `step(i)`, `i` the
    call's index, after `warmup` untimed calls (indices 1..=warmup): training steps,
    timed over a run as labelgan's step examples do."""
    for i in range(warmup):
        step(i + 1)
    t = time.perf_counter()
    for i in range(max(steps, 1)):
        step(i)
    return (time.perf_counter() - t) / max(steps, 1)
