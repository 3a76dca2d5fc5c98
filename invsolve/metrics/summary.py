"""Summaries of per-image scores: the mean with a Student-t confidence interval."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def mean_confidence_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """``(mean, half_width)`` of the two-sided Student-t interval at ``level`` (``nan`` width for n = 1)."""
    from scipy.stats import t

    values = [float(v) for v in values]
    if not values:
        raise ValueError("values must contain at least one number")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    n = len(values)
    mean = statistics.fmean(values)
    if n == 1:
        return mean, math.nan
    return mean, float(t.ppf(0.5 + level / 2, n - 1)) * statistics.stdev(values) / math.sqrt(n)


def format_interval(values: Sequence[float], digits: int = 2, level: float = 0.95) -> str:
    """``"mean +- half_width"`` of :func:`mean_confidence_interval`."""
    mean, half = mean_confidence_interval(values, level)
    return f"{mean:.{digits}f} +- {half:.{digits}f}"


def provenance(script: str, argv: Sequence[str]) -> str:
    """The line a result table ends with: the command that made it (``python SCRIPT ARGS``) and the machine."""
    import platform
    import shlex

    import torch

    command = " ".join(shlex.quote(a) for a in ["python", script, *argv])
    return f"Command: `{command}` ({platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads)"


def publish(text: str, out: str | None) -> int:
    """Print a result table and, when ``out`` is given, write it there atomically; 0 (an exit status)."""
    if out:
        from invsolve._atomic import write_text_atomic

        write_text_atomic(out, text)
    print(text)
    return 0
