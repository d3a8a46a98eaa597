"""Path safety and the tracker's on-disk layout.

Every endpoint or CLI command that takes a path or a name from a user goes through this module,
so a request can never read or write outside the directory it was meant for: ``..`` components,
absolute paths, and symlinks that resolve outside the root are all refused with a
:class:`UnsafePathError` that names the offending field (the API turns it into a 400).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

__all__ = [
    "UnsafePathError",
    "safe_join",
    "validate_name",
    "validate_relative_path",
    "workbench_home",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")


class UnsafePathError(ValueError):
    """A user-supplied path or name would escape its root or is malformed.

    Attributes:
        field: the request field (or CLI option) that carried the bad value.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def workbench_home() -> Path:
    """Return WORKBENCH_HOME (default ``~/.workbench``), read at call time.

    Read on every call (not cached) so tests that monkeypatch the environment see their own home.
    """
    try:
        from workbench_core.config import workbench_home as core_home  # type: ignore[import-not-found]

        return Path(core_home())
    except ImportError:
        env = os.environ.get("WORKBENCH_HOME")
        return Path(env).expanduser() if env else Path.home() / ".workbench"


def validate_name(value: str, field: str = "name") -> str:
    """Check a single name (artifact, project, session id): no separators, no dots-only.

    Names end up as directory names and URL segments, so they are restricted to a conservative
    alphabet rather than "anything that is not a slash".

    Raises:
        UnsafePathError: when the name is empty, too long, or holds other characters.
    """
    if not isinstance(value, str) or not value:
        raise UnsafePathError(field, "must be a non-empty string")
    if value in (".", "..") or not _NAME_RE.match(value):
        raise UnsafePathError(
            field,
            f"{value!r} is not a valid name (letters, digits, '.', '_', '-'; at most 128; "
            "no path separators or '..')",
        )
    return value


def validate_relative_path(value: str, field: str = "path") -> PurePosixPath:
    """Check a relative path given by a user, without touching the disk.

    Raises:
        UnsafePathError: for absolute paths, drive letters, backslashes, NUL bytes or ``..``.
    """
    if not isinstance(value, str):
        raise UnsafePathError(field, "must be a string")
    if "\x00" in value:
        raise UnsafePathError(field, "must not contain NUL bytes")
    if "\\" in value:
        raise UnsafePathError(field, "must use '/' separators, not backslashes")
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value) or value.startswith("~"):
        raise UnsafePathError(field, f"{value!r} is absolute; give a path relative to the root")
    pure = PurePosixPath(value)
    if any(part == ".." for part in pure.parts):
        raise UnsafePathError(field, f"{value!r} contains '..' (path traversal)")
    return pure


def safe_join(root: Path, value: str, field: str = "path") -> Path:
    """Join a user-supplied relative path onto ``root`` and prove it stays inside.

    The result is resolved (following symlinks), so a symlink inside the root that points
    outside it is refused as well.

    Raises:
        UnsafePathError: when the path is malformed or resolves outside ``root``.
    """
    rel = validate_relative_path(value, field)
    root_resolved = Path(root).resolve()
    candidate = (root_resolved / Path(*rel.parts)) if rel.parts else root_resolved
    resolved = candidate.resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise UnsafePathError(field, f"{value!r} resolves outside its root (symlink escape)")
    return resolved
