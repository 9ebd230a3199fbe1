"""One metric over random members of a hypothesis space: its mean and a 95% interval for one member.

Shared by every probe that reports "the same metric at random init" beside the uploaded weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

# Below this many members a percentile interval is mostly the min and max; use a t interval instead.
MIN_MEMBERS_FOR_PERCENTILE = 20


@dataclass(frozen=True)
class Spread:
    """One metric across random members: ``values`` per member (``None`` where undefined), ``n``
    members where defined, their ``mean``, and a 95% interval ``[low, high]`` for *one* random
    member: percentiles with ``n >= 20``; with ``2 <= n < 20`` the Student-t prediction interval
    ``m ± t(0.975, n-1) sd sqrt(1 + 1/n)`` of the values (``"t_prediction"``) or of their logarithms,
    exponentiated (``"t_prediction_log"``, see ``member_spread``); none below 2."""

    mean: float | None
    low: float | None
    high: float | None
    interval: str
    n: int
    values: tuple[float | None, ...]


def member_spread(
    values: Sequence[float | None], bounds: tuple[float | None, float | None] = (None, None), log_scale: bool = False
) -> Spread:
    """Mean and 95% interval of one metric over random members (method in ``Spread``).

    ``log_scale``: for a positive, scale-free metric (a ratio), build the t interval on ``log(values)``
    and exponentiate it (``"t_prediction_log"``), so that a right-skewed spread over a few members
    is not summarised by a symmetric interval reaching below 0; used when every value is > 0.
    ``bounds``: the metric's range, e.g. ``(0, 1)`` for a fraction; a plain t interval is clipped
    to it.
    """
    defined = np.array([v for v in values if v is not None], dtype=np.float64)
    n = int(defined.size)
    mean = float(defined.mean()) if n else None
    low = high = None
    interval = "none"
    if n >= MIN_MEMBERS_FOR_PERCENTILE:
        low, high = (float(q) for q in np.percentile(defined, [2.5, 97.5]))
        interval = "percentile"
    elif n >= 2:
        logged = log_scale and bool(np.all(defined > 0))
        sample = np.log(defined) if logged else defined
        centre = float(sample.mean())
        half_width = float(stats.t.ppf(0.975, n - 1) * sample.std(ddof=1) * np.sqrt(1.0 + 1.0 / n))
        low, high = centre - half_width, centre + half_width
        if logged:
            low, high, interval = float(np.exp(low)), float(np.exp(high)), "t_prediction_log"
        else:
            low = low if bounds[0] is None else max(low, bounds[0])
            high = high if bounds[1] is None else min(high, bounds[1])
            interval = "t_prediction"
    return Spread(mean=mean, low=low, high=high, interval=interval, n=n, values=tuple(values))
