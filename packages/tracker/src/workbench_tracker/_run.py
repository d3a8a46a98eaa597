"""The SDK: ``init`` a run, ``log`` to it, ``finish`` it.

A :class:`Run` owns a :class:`~workbench_tracker._writer.MetricWriter`; ``log()`` validates in
the caller's thread and hands rows to the writer, so a training loop pays microseconds per call.
A run that is still open when the interpreter exits is finished by an ``atexit`` hook; an
exception that ends the script marks it ``failed`` with its traceback (the previous
``sys.excepthook`` still runs afterwards).
"""

from __future__ import annotations

import atexit
import io
import os
import sys
import threading
import time
import traceback as _tb
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from workbench_tracker._validate import check_key, check_step, to_float
from workbench_tracker._writer import MetricWriter
from workbench_tracker.store.base import (
    MetricRow,
    RunInfo,
    RunNotFoundError,
    Store,
    heartbeat_interval_s,
)

__all__ = ["Image", "Run", "finish", "get_active_run", "init", "log"]

_active: list[Run] = []
_lock = threading.Lock()
_hooks_installed = False


class _TrackedDict(dict[str, Any]):
    """A dict that tells its run when it changed, so the writer persists it."""

    def __init__(self, data: Mapping[str, Any] | None, on_change: Callable[[], None]) -> None:
        super().__init__(data or {})
        self._on_change = on_change

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self._on_change()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._on_change()

    def update(self, *args: Any, **kwargs: Any) -> None:
        super().update(*args, **kwargs)
        self._on_change()

    def setdefault(self, key: str, default: Any = None) -> Any:
        out = super().setdefault(key, default)
        self._on_change()
        return out

    def pop(self, key: str, *default: Any) -> Any:
        out = super().pop(key, *default)
        self._on_change()
        return out


def _png_from_array(arr: Any) -> tuple[bytes, int, int]:
    """Encode an HxW, HxWx3 or HxWx4 uint8-like array as PNG with zlib only (no PIL needed)."""
    import struct

    import numpy as np

    a = np.asarray(arr)
    if a.dtype != np.uint8:
        a = np.clip(a * 255.0 if a.dtype.kind == "f" and a.max() <= 1.0 else a, 0, 255)
        a = a.astype(np.uint8)
    if a.ndim == 2:
        color = 0
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        color = 2 if a.shape[2] == 3 else 6
    else:
        raise ValueError(f"image: array shape {a.shape} is not HxW, HxWx3 or HxWx4")
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        body = tag + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )
    return png, w, h


class Image:
    """An image to log: PNG/JPEG bytes, a file path, a PIL image or an HxW(xC) array.

    Args:
        data: the image.
        caption: shown under it in the UI.
    """

    def __init__(self, data: Any, caption: str = "") -> None:
        self.caption = caption
        self.width: int | None = None
        self.height: int | None = None
        self.mime = "image/png"
        if isinstance(data, bytes | bytearray):
            self.data = bytes(data)
            if self.data[:3] == b"\xff\xd8\xff":
                self.mime = "image/jpeg"
            elif self.data[:8] != b"\x89PNG\r\n\x1a\n":
                raise ValueError("image: bytes are neither PNG nor JPEG")
        elif isinstance(data, str | os.PathLike):
            self.__init__(Path(data).read_bytes(), caption)  # type: ignore[misc]
            return
        elif hasattr(data, "save") and hasattr(data, "size"):  # PIL.Image
            buf = io.BytesIO()
            data.save(buf, format="PNG")
            self.data = buf.getvalue()
            self.width, self.height = data.size
        elif hasattr(data, "shape"):
            self.data, self.width, self.height = _png_from_array(data)
        else:
            raise TypeError(f"image: unsupported type {type(data).__name__}")
        if self.width is None and self.mime == "image/png" and len(self.data) >= 24:
            self.width = int.from_bytes(self.data[16:20], "big")
            self.height = int.from_bytes(self.data[20:24], "big")


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


class Run:
    """A live run. Create with :func:`init`; use as a context manager or call :meth:`finish`.

    Attributes:
        id: the run's id (pass it to ``init(id=..., resume=True)`` to continue the run).
        project: its project.
        name: its display name.
        store: the :class:`~workbench_tracker.store.base.Store` it writes to.
        config: hyper-parameters (a dict; changes are persisted).
        summary: final/best values (a dict; persisted; the last value of each logged key is
            filled in automatically unless set explicitly).
    """

    def __init__(
        self,
        store: Store,
        info: RunInfo,
        *,
        start_step: int = 0,
        flush_interval: float = 1.0,
        max_pending: int = 500_000,
        capture_env: bool = True,
    ) -> None:
        self.store = store
        self.id = info.id
        self.project = info.project
        self.name = info.name
        self.tags = list(info.tags)
        self.notes = info.notes
        self._dirty = threading.Event()
        self.config: _TrackedDict = _TrackedDict(info.config, self._dirty.set)
        self.summary: _TrackedDict = _TrackedDict(info.summary, self._dirty.set)
        self._explicit_summary: set[str] = set(info.summary)
        self._last: dict[str, float] = {}
        self._step = start_step  # next automatic step
        self._last_step = start_step  # lowest step a new log() may use
        self._finished = False
        self._status = "running"
        self._env_thread: threading.Thread | None = None
        if capture_env:
            # Its own thread: package/git/GPU probing must not delay init nor the writer.
            self._env_thread = threading.Thread(
                target=self._capture_env, name=f"workbench-tracker-env-{self.id}", daemon=True
            )
            self._env_thread.start()
        self._log_lock = threading.Lock()
        self._beat = time.monotonic()
        self._beat_every = heartbeat_interval_s()
        self._writer = MetricWriter(
            store,
            self.id,
            flush_interval=flush_interval,
            max_pending=max_pending,
            on_idle=self._persist,
            idle_interval=self._beat_every,
        )

    # -- properties ---------------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        """A local directory for this run's files (``WORKBENCH_HOME/runs/<id>``)."""
        from workbench_tracker.store.sql import tracker_home

        path = tracker_home() / "runs" / self.id
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def step(self) -> int:
        """The step the next ``log()`` without an explicit step will use."""
        return self._step

    @property
    def status(self) -> str:
        """``running`` until finished, then ``finished`` or ``failed``.

        Readers (``wt.Api``, the viewer) show ``crashed`` for a run whose process died without
        finishing it: its writer's heartbeat stopped.
        """
        return self._status

    @property
    def finished(self) -> bool:
        """Whether :meth:`finish` has run."""
        return self._finished

    # -- logging ------------------------------------------------------------------------------
    def log(self, data: Mapping[str, Any], step: int | None = None, *, commit: bool = True) -> None:
        """Record scalars (and :class:`Image` values) at a step.

        Only validates and enqueues; the writer thread does the I/O. Blocks only when the store
        has fallen ``max_pending`` points behind (backpressure, see ``_writer``).

        Args:
            data: ``{key: number or Image}``.
            step: explicit step (>= the last one); default: the run's next step.
            commit: with no explicit step, advance the step after this call (``False`` lets
                several calls share one step).

        Raises:
            TypeError: a non-numeric value or a non-str key (the message names the key).
            ValueError: an oversized/empty key or a bad step.
            RuntimeError: the run is finished.
        """
        if self._finished:
            raise RuntimeError(f"run {self.id} is finished; call init() for a new run")
        if not isinstance(data, Mapping):
            raise TypeError(f"data: must be a mapping of key -> number, got {type(data).__name__}")
        with self._log_lock:
            if step is None:
                s = self._step
            else:
                s = check_step(step, self._last_step)
            now = time.time()
            rows: list[MetricRow] = []
            images: list[tuple[str, Image]] = []
            for key, value in data.items():
                if type(key) is not str or not key or len(key) > 256:
                    check_key(key)
                if type(value) is float:
                    rows.append((key, s, value, now))
                elif isinstance(value, Image):
                    check_key(key)
                    images.append((key, value))
                else:
                    rows.append((key, s, to_float(key, value), now))
            for key, _, v, _ in rows:
                if not key.isprintable():
                    check_key(key)
                self._last[key] = v
            self._last_step = s
            if step is None:
                if commit:
                    self._step = s + 1
            else:
                self._step = s + 1 if commit else s
        if rows:
            self._writer.add(rows)
            self._dirty.set()
        for key, image in images:
            self.log_image(key, image, step=s)

    def log_image(
        self, key: str, image: Any, *, step: int | None = None, caption: str = ""
    ) -> None:
        """Store an image now (synchronously: images are rare and large).

        Args:
            key: the image series' name.
            image: an :class:`Image`, or anything :class:`Image` accepts.
            step: default: the run's current step.
            caption: overrides the Image's caption.
        """
        check_key(key)
        img = image if isinstance(image, Image) else Image(image, caption)
        s = self._last_step if step is None else check_step(step, 0)
        self.store.add_media(
            self.id,
            key,
            s,
            img.data,
            mime=img.mime,
            caption=caption or img.caption,
            width=img.width,
            height=img.height,
        )

    def alert(self, kind: str, message: str, *, key: str = "", step: int | None = None) -> None:
        """Record an alert on this run (shown on its page)."""
        value = self._last.get(key) if key else None
        self.store.add_alert(self.id, kind, message, key=key, step=step, value=value)

    def log_artifact(self, *args: Any, **kwargs: Any) -> Any:
        """Log an artifact produced by this run (see ``workbench_tracker.artifacts``)."""
        from workbench_tracker import artifacts  # type: ignore[attr-defined]

        return artifacts.log_artifact(self, *args, **kwargs)

    def use_artifact(self, *args: Any, **kwargs: Any) -> Any:
        """Record that this run used an artifact and return it."""
        from workbench_tracker import artifacts  # type: ignore[attr-defined]

        return artifacts.use_artifact(self, *args, **kwargs)

    # -- persistence --------------------------------------------------------------------------
    def _capture_env(self) -> None:
        from workbench_tracker._env import capture_environment

        try:
            env = capture_environment()
        except Exception as exc:  # environment capture is best effort, never fatal
            env = {"error": f"environment capture failed: {exc!r}"}
        if self._finished:
            self._env_result = env  # finish() writes it with the final update
            return
        try:
            self.store.update_run(self.id, environment=env)
        except Exception:
            self._env_result = env

    _env_result: dict[str, Any] | None = None

    def _persist(self) -> None:
        """Writer-thread hook: store config/summary when they changed, and keep the heartbeat.

        Any update touches the run's ``updated_at``; an idle run gets an empty update every
        ``heartbeat_interval_s()`` so readers can tell a live run from one whose process was
        killed (see ``store.base.live_status``).
        """
        now = time.monotonic()
        if self._dirty.is_set():
            self._dirty.clear()
            summary = self._summary_snapshot()
            self.store.update_run(self.id, summary=summary, config=dict(self.config))
            self._beat = now
        elif now - self._beat >= self._beat_every:
            self.store.update_run(self.id)
            self._beat = now

    def _summary_snapshot(self) -> dict[str, Any]:
        from workbench_tracker.store.base import encode_float

        out: dict[str, Any] = {k: encode_float(v) for k, v in list(self._last.items())}
        out.update(dict(self.summary))
        return out

    def flush(self, timeout: float | None = None) -> None:
        """Block until everything logged so far is in the store.

        Raises:
            WriterError: the writer could not write (the cause is chained).
        """
        self._writer.flush(timeout)
        self._persist()

    def finish(
        self, status: str = "finished", *, error: str | None = None, tb: str | None = None
    ) -> None:
        """Write everything pending and mark the run ``status``. Idempotent."""
        if self._finished:
            return
        self._finished = True
        with _lock:
            if self in _active:
                _active.remove(self)
        try:
            self._writer.close()
        finally:
            self._status = status
            fields: dict[str, Any] = {
                "status": status,
                "finished_at": datetime.now(UTC),
                "summary": self._summary_snapshot(),
                "config": dict(self.config),
            }
            if error is not None:
                fields["error"] = error
                fields["traceback"] = tb
            if self._env_thread is not None:
                self._env_thread.join(timeout=30)
                if self._env_result is not None:
                    fields["environment"] = self._env_result
            self.store.update_run(self.id, **fields)

    def fail(self, exc: BaseException) -> None:
        """Finish as ``failed`` recording ``exc`` and its traceback."""
        tb = "".join(_tb.format_exception(type(exc), exc, exc.__traceback__))
        self.finish("failed", error=f"{type(exc).__name__}: {exc}", tb=tb)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            self.fail(exc)
        else:
            self.finish()

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, project={self.project!r}, name={self.name!r})"


def _install_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        for run in list(_active):
            try:
                run.fail(exc.with_traceback(tb))
            except Exception as err:  # never mask the original exception
                print(f"workbench-tracker: could not record failure: {err!r}", file=sys.stderr)
        previous(exc_type, exc, tb)

    sys.excepthook = hook
    atexit.register(_finish_all)


def _finish_all() -> None:
    for run in list(_active):
        try:
            run.finish()
        except Exception as err:
            print(f"workbench-tracker: could not finish run {run.id}: {err!r}", file=sys.stderr)


def init(
    project: str = "default",
    name: str | None = None,
    config: Mapping[str, Any] | None = None,
    tags: Iterable[str] = (),
    notes: str = "",
    *,
    id: str | None = None,
    resume: bool | str = False,
    store: Store | str | None = None,
    flush_interval: float = 1.0,
    max_pending: int = 500_000,
    capture_env: bool = True,
    monitors: Mapping[str, Any] | bool | None = None,
    system_metrics: float | None = None,
) -> Run:
    """Start (or resume) a run and make it the active run.

    Args:
        project: project name (created on first use).
        name: display name; default: the run id.
        config: hyper-parameters.
        tags: labels to filter runs by.
        notes: free text.
        id: the run id; default: a new random id.
        resume: ``True``/``"allow"`` continues run ``id`` when it exists (its steps go on from
            the last one), ``"must"`` requires it to exist; ``False`` requires ``id`` to be new.
        store: a Store or URL; default ``get_store()``.
        flush_interval: seconds a point may wait in memory.
        max_pending: the writer's buffer bound (points) before ``log()`` blocks.
        capture_env: record Python, packages, git and GPU information.
        monitors: ``True`` for the default detectors (NaN/Inf, spike, divergence, plateau) on
            every metric, or a per-metric configuration (see ``workbench_tracker.monitors``);
            alerts are stored with the run and shown in the UI.
        system_metrics: sample CPU/RAM/GPU as ``system/*`` series every this many seconds.

    Raises:
        ValueError: a field is invalid (message names it) or the run id already exists.
        RunNotFoundError: ``resume="must"`` and no run has ``id``.
    """
    from workbench_tracker.store import get_store

    if not isinstance(project, str) or not project or len(project) > 200:
        raise ValueError("project: must be a non-empty string of at most 200 characters")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise ValueError("name: must be a string of at most 200 characters")
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"config: must be a mapping, got {type(config).__name__}")
    tag_list = [tags] if isinstance(tags, str) else list(tags)
    for t in tag_list:
        if not isinstance(t, str) or not t or len(t) > 128:
            raise ValueError(f"tags: {t!r} must be a non-empty string of at most 128 characters")
    if resume not in (False, True, "allow", "must", "never"):
        raise ValueError(f"resume: must be True, False, 'allow' or 'must', got {resume!r}")
    if id is not None and (not isinstance(id, str) or not id or len(id) > 64):
        raise ValueError("id: must be a non-empty string of at most 64 characters")
    st = store if isinstance(store, Store) else get_store(store)
    cfg = dict(config or {})
    _check_json("config", cfg)
    run_id = id or _new_id()
    info: RunInfo | None = None
    start_step = 0
    if resume in (True, "allow", "must"):
        try:
            existing = st.get_run(run_id)
        except RunNotFoundError:
            if resume == "must":
                raise
            existing = None
        if existing is not None:
            merged = {**existing.config, **cfg}
            info = st.update_run(
                run_id,
                status="running",
                finished_at=None,
                config=merged,
                error=None,
                traceback=None,
                **({"tags": list(dict.fromkeys([*existing.tags, *tag_list]))} if tag_list else {}),
                **({"notes": notes} if notes else {}),
            )
            keys = st.metric_keys(run_id)
            if keys:
                start_step = max(k["last_step"] for k in keys.values()) + 1
    if info is None:
        info = st.create_run(
            RunInfo(
                id=run_id,
                project=project,
                name=name or run_id,
                config=cfg,
                tags=tag_list,
                notes=notes,
            )
        )
    run = Run(
        st,
        info,
        start_step=start_step,
        flush_interval=flush_interval,
        max_pending=max_pending,
        capture_env=capture_env,
    )
    if monitors:
        from workbench_tracker.monitors import attach_monitors

        attach_monitors(run, monitors)
    if system_metrics:
        from workbench_tracker.system import attach_system_metrics

        attach_system_metrics(run, float(system_metrics))
    with _lock:
        _active.append(run)
    _install_hooks()
    return run


def _check_json(field: str, value: Any) -> None:
    import json

    try:
        json.dumps(value, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{field}: must be JSON-serialisable ({exc})") from exc


def get_active_run() -> Run | None:
    """The most recently started run that is not finished, or None."""
    with _lock:
        return _active[-1] if _active else None


def _require_run() -> Run:
    run = get_active_run()
    if run is None:
        raise RuntimeError("no active run: call workbench_tracker.init() first")
    return run


def log(data: Mapping[str, Any], step: int | None = None, *, commit: bool = True) -> None:
    """``log`` on the active run (see :meth:`Run.log`)."""
    _require_run().log(data, step, commit=commit)


def finish(status: str = "finished") -> None:
    """Finish the active run (no-op without one)."""
    run = get_active_run()
    if run is not None:
        run.finish(status)
