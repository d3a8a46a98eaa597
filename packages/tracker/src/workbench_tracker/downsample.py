"""Server-side downsampling of metric series (numpy, any number of points).

Two reductions, both returning *indices* into the original arrays so real points are kept (a
chart never shows a value that was not logged):

- ``lttb``: Largest-Triangle-Three-Buckets (Steinarsson 2013) keeps the points that preserve the
  visual shape of a line; vectorised per bucket so a million points reduce in milliseconds.
- ``minmax``: per bucket the first, min, max and last points (an "M4" envelope): spikes are never
  lost, which matters when hunting a loss blow-up.

Non-finite values (NaN, +/-Inf) are always kept: they are what a user is looking for, and LTTB's
triangle areas are undefined for them.

A third reduction is not a selection: :func:`envelope_arrays` gives, per bucket of about equal
point count, the first and last index and the min and max of the finite values, which a chart
draws as a shaded band behind the downsampled line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workbench_tracker.store.base import Series

__all__ = [
    "METHODS",
    "downsample_arrays",
    "downsample_series",
    "envelope_arrays",
    "lttb_indices",
    "minmax_indices",
]

METHODS = ("lttb", "minmax")


def _np() -> Any:
    import numpy as np

    return np


def lttb_indices(x: Any, y: Any, threshold: int) -> Any:
    """Indices of the LTTB selection of ``threshold`` points (all of them when fewer)."""
    np = _np()
    n = len(x)
    if threshold >= n or threshold < 3:
        return np.arange(n) if threshold >= n else np.unique(np.array([0, n - 1]))
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    # Bucket edges over the interior points 1 .. n-2.
    edges = np.linspace(1, n - 1, threshold - 1).astype(np.int64)
    out = np.empty(threshold, dtype=np.int64)
    out[0] = 0
    out[-1] = n - 1
    a = 0
    for i in range(threshold - 2):
        lo, hi = edges[i], edges[i + 1]
        if hi <= lo:
            hi = lo + 1
        # Average of the next bucket (or the last point for the final bucket).
        nlo = edges[i + 1]
        nhi = edges[i + 2] if i + 2 < len(edges) else n
        if nhi <= nlo:
            nhi = nlo + 1
        avg_x = x[nlo:nhi].mean()
        avg_y = y[nlo:nhi].mean()
        bx = x[lo:hi]
        by = y[lo:hi]
        area = np.abs((x[a] - avg_x) * (by - y[a]) - (x[a] - bx) * (avg_y - y[a]))
        j = int(np.argmax(area)) if len(area) else 0
        a = lo + j
        out[i + 1] = a
    return out


def _lttb_fast(x: Any, y: Any, threshold: int) -> Any:
    """LTTB with the per-bucket work vectorised across buckets of equal size.

    Buckets are handled in one numpy pass using the *previous bucket's average* as the anchor
    instead of the previously selected point; on dense series the selection is visually
    indistinguishable from exact LTTB and it is ~50x faster in Python. Used for long series.
    """
    np = _np()
    n = len(x)
    m = threshold - 2
    size = (n - 2) // m
    if size < 2:
        return lttb_indices(x, y, threshold)
    usable = size * m
    bx = x[1 : 1 + usable].reshape(m, size)
    by = y[1 : 1 + usable].reshape(m, size)
    mx = bx.mean(axis=1)
    my = by.mean(axis=1)
    prev_x = np.concatenate(([x[0]], mx[:-1]))
    prev_y = np.concatenate(([y[0]], my[:-1]))
    next_x = np.concatenate((mx[1:], [x[-1]]))
    next_y = np.concatenate((my[1:], [y[-1]]))
    area = np.abs(
        (prev_x[:, None] - next_x[:, None]) * (by - prev_y[:, None])
        - (prev_x[:, None] - bx) * (next_y[:, None] - prev_y[:, None])
    )
    j = np.argmax(area, axis=1)
    picked = 1 + np.arange(m) * size + j
    return np.concatenate(([0], picked, [n - 1]))


def minmax_indices(y: Any, threshold: int) -> Any:
    """Per bucket: first, argmin, argmax, last, so about ``threshold`` points in all."""
    np = _np()
    n = len(y)
    if threshold >= n:
        return np.arange(n)
    buckets = max(1, threshold // 4)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    lo = edges[:-1]
    hi = edges[1:]
    keep = hi > lo
    lo, hi = lo[keep], hi[keep]
    # minimum/maximum per segment with reduceat (ignores NaN by filling).
    filled = np.where(np.isfinite(y), y, np.nan)
    ymin = np.where(np.isnan(filled), np.inf, filled)
    ymax = np.where(np.isnan(filled), -np.inf, filled)
    size = hi - lo
    if np.all(size == size[0]):
        k = int(size[0])
        cut = lo[0] + len(lo) * k
        amin = lo + np.argmin(ymin[lo[0] : cut].reshape(-1, k), axis=1)
        amax = lo + np.argmax(ymax[lo[0] : cut].reshape(-1, k), axis=1)
    else:
        amin = np.array([a + int(np.argmin(ymin[a:b])) for a, b in zip(lo, hi, strict=True)])
        amax = np.array([a + int(np.argmax(ymax[a:b])) for a, b in zip(lo, hi, strict=True)])
    return np.unique(np.concatenate((lo, amin, amax, hi - 1)))


def downsample_arrays(steps: Any, values: Any, points: int, method: str = "lttb") -> Any:
    """Indices selecting about ``points`` of (steps, values), always keeping non-finite values.

    Raises:
        ValueError: unknown ``method`` or ``points`` < 2.
    """
    np = _np()
    if method not in METHODS:
        raise ValueError(f"method: must be one of {', '.join(METHODS)}, got {method!r}")
    if points < 2:
        raise ValueError("points: must be at least 2")
    n = len(steps)
    if n <= points:
        return np.arange(n)
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(y)
    if method == "minmax":
        idx = minmax_indices(y, points)
    else:
        yy = np.where(finite, y, 0.0) if not finite.all() else y
        # _lttb_fast needs at least one interior bucket; below 3 points LTTB keeps the ends.
        fast = n > 20 * points and points >= 3
        idx = _lttb_fast(x, yy, points) if fast else lttb_indices(x, yy, points)
    if not finite.all():
        idx = np.union1d(idx, np.flatnonzero(~finite)[: max(points, 1)])
    return idx


def envelope_arrays(
    values: Any, buckets: int, *, maxs: Any = None, counts: Any = None
) -> tuple[Any, Any, Any, Any]:
    """Per bucket of about equal point count: first index, last index, finite min, finite max.

    The items are split in index order into at most ``buckets`` contiguous buckets holding about
    the same number of points. A bucket is described by the index of its first and of its last
    item (inclusive), so a band drawn from ``steps[first]`` to ``steps[last]`` covers the whole
    span it summarises, not a single representative step. NaN and +/-Inf are ignored; a bucket
    without a finite value has NaN for both min and max.

    Args:
        values: one value per point (or, with ``maxs``, the minimum of each item).
        buckets: how many buckets at most (fewer when there are fewer items).
        maxs: the maximum of each item when the items are already-reduced groups of points
            (the SQL store's per-block summaries); ``values`` then holds their minima.
        counts: points per item, so buckets hold about equal numbers of points rather than of
            items; default one point per item.

    Returns:
        ``(first, last, mins, maxs)``: int64 index arrays into the inputs and float64 arrays, one
        entry per bucket, in order.

    Raises:
        ValueError: ``buckets`` < 1.
    """
    np = _np()
    if buckets < 1:
        raise ValueError("buckets: must be at least 1")
    lo_v = np.asarray(values, dtype=np.float64)
    hi_v = lo_v if maxs is None else np.asarray(maxs, dtype=np.float64)
    n = len(lo_v)
    if n == 0:
        empty = np.empty(0, dtype=np.float64)
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), empty, empty
    k = min(buckets, n)
    if counts is None:
        # Bucket b starts at ceil(b * n / k): strictly increasing because k <= n.
        first = (np.arange(k, dtype=np.int64) * n + k - 1) // k
    else:
        # An item goes to the ``total / k`` slice its first point falls in.
        weight = np.asarray(counts, dtype=np.int64)
        before = np.cumsum(weight) - weight
        bucket = before * k // max(int(weight.sum()), 1)
        first = np.flatnonzero(np.concatenate(([True], bucket[1:] != bucket[:-1])))
    last = np.concatenate((first[1:] - 1, [n - 1]))
    # fmin/fmax skip NaN (and give NaN only for an all-NaN bucket); Inf is made NaN first.
    lo_f = np.where(np.isfinite(lo_v), lo_v, np.nan)
    hi_f = lo_f if maxs is None else np.where(np.isfinite(hi_v), hi_v, np.nan)
    with np.errstate(invalid="ignore"):
        mins = np.fmin.reduceat(lo_f, first)
        maxes = np.fmax.reduceat(hi_f, first)
    return first.astype(np.int64), last.astype(np.int64), mins, maxes


def downsample_series(series: Series, points: int, method: str = "lttb") -> Series:
    """A :class:`Series` reduced to about ``points`` points with :func:`downsample_arrays`."""
    from workbench_tracker.store.base import Series as _Series

    np = _np()
    if len(series) <= points:
        downsample_arrays([], [], points, method)  # validate arguments anyway
        return series
    idx = downsample_arrays(series.steps, series.values, points, method)
    steps = np.asarray(series.steps)[idx].tolist()
    values = np.asarray(series.values, dtype=np.float64)[idx].tolist()
    times = np.asarray(series.times)[idx].tolist() if series.times else []
    return _Series(steps, values, times)
