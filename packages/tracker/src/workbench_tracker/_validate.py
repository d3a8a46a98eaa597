"""Validation of what a script logs: done in the caller's thread so errors surface at ``log()``.

Everything here is on the hot path (``log()`` is called millions of times), so the common case
(a ``str`` key and a ``float``/``int`` value) takes the shortest branch.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["MAX_KEY_LENGTH", "check_key", "check_step", "to_float"]

MAX_KEY_LENGTH = 256


def check_key(key: Any) -> str:
    """Return ``key`` if it is a usable metric name.

    Raises:
        TypeError: not a string.
        ValueError: empty, longer than ``MAX_KEY_LENGTH``, or holding control characters.
    """
    if type(key) is not str:
        raise TypeError(f"metric key {key!r}: must be a str, got {type(key).__name__}")
    if not key or len(key) > MAX_KEY_LENGTH:
        shown = key if len(key) <= 40 else key[:40] + "..."
        raise ValueError(
            f"metric key {shown!r}: length must be 1..{MAX_KEY_LENGTH}, got {len(key)}"
        )
    if not key.isprintable():
        raise ValueError(f"metric key {key!r}: must not contain control characters")
    return key


def to_float(key: str, value: Any) -> float:
    """The value as a float (NaN and +/-Inf kept as they are).

    Accepts ints, floats and numeric scalars with ``.item()`` (numpy, 0-d tensors) without
    importing any array library.

    Raises:
        TypeError: a bool, string, None, container or anything else that is not one number.
    """
    t = type(value)
    if t is float:
        return value  # type: ignore[no-any-return]
    if t is int:
        return float(value)
    if t is bool or value is None or isinstance(value, str | bytes):
        raise TypeError(f"metric {key!r}: value must be a number, got {t.__name__} {value!r:.40}")
    item = getattr(value, "item", None)
    if callable(item):
        size = getattr(value, "size", 1)
        size = size() if callable(size) else size
        if size != 1:
            raise TypeError(f"metric {key!r}: value must be a scalar, got shape of size {size}")
        value = item()
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"metric {key!r}: value must be a number, got {type(value).__name__}")
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"metric {key!r}: value must be a number, got {t.__name__}")


def check_step(step: Any, last_step: int) -> int:
    """Return a valid explicit step: an int >= 0 and not below the run's last step.

    Raises:
        TypeError: not an int.
        ValueError: negative or going backwards.
    """
    if type(step) is not int:
        if isinstance(step, bool) or not isinstance(step, int):
            if isinstance(step, float) and step.is_integer() and math.isfinite(step):
                step = int(step)
            else:
                raise TypeError(f"step: must be an int, got {type(step).__name__} {step!r}")
    if step < 0:
        raise ValueError(f"step: must be >= 0, got {step}")
    if step < last_step:
        raise ValueError(
            f"step: {step} is below the run's current step {last_step}; steps must not decrease"
        )
    if step > 2**62:
        raise ValueError(f"step: {step} is too large")
    return int(step)
