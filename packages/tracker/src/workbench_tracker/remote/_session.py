"""Remote viewing sessions: start the viewer over SSH, tunnel to it, keep it alive, stop it.

A session's life::

    connect_ssh (verified host key) -> find a Python with workbench_tracker
      -> nohup python -m workbench_tracker.remote._serve (loopback, free port, pid recorded)
      -> PortForwarder on 127.0.0.1:<local> -> http://127.0.0.1:<local>/
      -> watchdog: keep-alive; on a dropped transport reconnect (restart the viewer if it died)
      -> stop(): kill the remote viewer, close the tunnel, forget the session

Sessions are recorded in ``WORKBENCH_HOME/remote/sessions/<id>.json`` (no secrets) with the pid
of the local process that owns the tunnel, so ``workbench tracker remote list/stop`` in another
terminal can see and end them.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import posixpath
import signal
import stat
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paramiko

from workbench_tracker.paths import (
    UnsafePathError,
    validate_name,
    validate_relative_path,
    workbench_home,
)
from workbench_tracker.remote._forward import PortForwarder
from workbench_tracker.remote._ssh import (
    RemoteError,
    RemotePythonNotFoundError,
    RemoteViewerError,
    SSHTarget,
    connect_ssh,
    quote,
    run_command,
)

__all__ = [
    "PYTHON_CANDIDATES",
    "RemoteSession",
    "SessionRecord",
    "find_remote_python",
    "get_active_session",
    "list_sessions",
    "registry_dir",
    "start_session",
    "stop_session",
]

log = logging.getLogger(__name__)

PYTHON_CANDIDATES = [
    "python3",
    "python",
    "~/.venv/bin/python",
    "~/venv/bin/python",
    "~/.workbench/venv/bin/python",
    "~/miniconda3/bin/python",
    "~/anaconda3/bin/python",
    "/opt/conda/bin/python",
]

_ACTIVE: dict[str, RemoteSession] = {}
_ACTIVE_LOCK = threading.Lock()


def registry_dir() -> Path:
    """``WORKBENCH_HOME/remote/sessions``."""
    path = workbench_home() / "remote" / "sessions"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _alive(pid: int) -> str:
    """Shell test that succeeds while ``pid`` runs; a zombie counts as gone.

    ``kill -0`` alone succeeds for zombies, which linger on hosts (and containers) whose init
    does not reap orphans, so the process state from ``ps`` decides when it is available.
    """
    return (
        f"( if command -v ps >/dev/null 2>&1; then s=$(ps -o stat= -p {pid} 2>/dev/null | "
        f'tr -d \' \'); [ -n "$s" ] && [ "${{s#Z}}" = "$s" ]; '
        f"else kill -0 {pid} 2>/dev/null; fi )"
    )


def _remote_path(p: str) -> str:
    # "~/x" must expand on the remote side, so it stays outside the quotes.
    if p.startswith("~/"):
        return '"$HOME"/' + quote(p[2:])
    return quote(p)


def find_remote_python(
    client: paramiko.SSHClient, configured: str | None = None, timeout: float = 30.0
) -> str:
    """Return the first Python on the remote host that can import workbench_tracker.

    Tries ``configured`` first, then :data:`PYTHON_CANDIDATES`.

    Raises:
        RemotePythonNotFoundError: listing what was tried.
    """
    candidates = ([configured] if configured else []) + PYTHON_CANDIDATES
    tried = []
    for cand in candidates:
        code = "import sys, workbench_tracker; print(sys.executable)"
        status, out, err = run_command(
            client, f"{_remote_path(cand)} -c {quote(code)}", timeout=timeout
        )
        if status == 0 and out.strip():
            return out.strip().splitlines()[-1]
        tried.append(f"{cand} ({(err.strip().splitlines() or ['not found'])[-1][:80]})")
    raise RemotePythonNotFoundError(
        "no Python with workbench-tracker on the remote host; tried: "
        + "; ".join(tried)
        + ". Install it there (pip install workbench-tracker) or pass --python PATH."
    )


@dataclass
class SessionRecord:
    """What the registry keeps about a session (never a secret)."""

    id: str
    user: str
    host: str
    port: int
    remote_python: str
    remote_pid: int
    remote_port: int
    remote_dir: str
    local_port: int
    owner_pid: int
    started_at: str
    status: str = "connected"
    reconnects: int = 0
    remote_home: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """The local URL that reaches the remote viewer."""
        return f"http://127.0.0.1:{self.local_port}/"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict including ``url``."""
        return {**asdict(self), "url": self.url}


class RemoteSession:
    """One live remote viewer + tunnel owned by this process. Create with :func:`start_session`."""

    def __init__(
        self,
        target: SSHTarget,
        *,
        python: str | None = None,
        remote_home: str | None = None,
        local_port: int = 0,
        keepalive: int = 15,
        reconnect: bool = True,
        start_timeout: float = 60.0,
        env: dict[str, str] | None = None,
        heartbeat_timeout: float = 120.0,
    ) -> None:
        self.target = target
        self.python = python
        self.remote_home = remote_home
        self.keepalive = keepalive
        self.reconnect_enabled = reconnect
        self.start_timeout = start_timeout
        self.env = dict(env or {})
        self.heartbeat_timeout = heartbeat_timeout
        self.id = uuid.uuid4().hex[:12]
        self._client: paramiko.SSHClient | None = None
        self._forwarder: PortForwarder | None = None
        self._local_port_wanted = local_port
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._watchdog: threading.Thread | None = None
        self.record: SessionRecord | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def _transport(self) -> paramiko.Transport | None:
        client = self._client
        return client.get_transport() if client is not None else None

    def _connect(self) -> None:
        self._client = connect_ssh(self.target)
        transport = self._client.get_transport()
        if transport is not None and self.keepalive:
            transport.set_keepalive(self.keepalive)

    def _viewer_dir(self) -> str:
        base = self.remote_home or "${WORKBENCH_HOME:-$HOME/.workbench}"
        return f"{base}/remote-viewers/{self.id}"

    def _start_viewer(self, python: str) -> tuple[int, int, str]:
        assert self._client is not None
        status, out, err = run_command(
            self._client, f'd="{self._viewer_dir()}"; mkdir -p "$d" && cd "$d" && pwd'
        )
        if status != 0:
            raise RemoteViewerError(f"could not create the viewer directory: {err.strip()}")
        rdir = out.strip().splitlines()[-1]
        env = dict(self.env)
        if self.remote_home:
            env["WORKBENCH_HOME"] = self.remote_home
        env_prefix = " ".join(f"{k}={quote(v)}" for k, v in env.items())
        port_file = posixpath.join(rdir, "port")
        cmd = (
            # Background only the simple command, so $! is the viewer's own pid and the
            # channel closes at once (the viewer holds none of its stdio).
            f"cd {quote(rdir)} || exit 1; rm -f {quote(port_file)}; {env_prefix} nohup {quote(python)} -m "
            f"workbench_tracker.remote._serve --host 127.0.0.1 --port 0 "
            f"--port-file {quote(port_file)} --heartbeat {quote(rdir)}/heartbeat "
            f"--heartbeat-timeout {self.heartbeat_timeout:g} "
            f"> {quote(rdir)}/viewer.log 2>&1 < /dev/null & "
            "echo $!"
        )
        status, out, err = run_command(self._client, cmd)
        if status != 0 or not out.strip().isdigit():
            raise RemoteViewerError(f"could not start the remote viewer: {err.strip() or out}")
        pid = int(out.strip())
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            status, out, _ = run_command(
                self._client, f"cat {quote(port_file)} 2>/dev/null; {_alive(pid)} && echo alive"
            )
            lines = out.split()
            if lines and lines[0].isdigit():
                return pid, int(lines[0]), rdir
            if "alive" not in lines:
                _, logtail, _ = run_command(self._client, f"tail -n 20 {quote(rdir)}/viewer.log")
                raise RemoteViewerError(f"the remote viewer exited during start:\n{logtail}")
            time.sleep(0.3)
        self._kill_remote(pid)
        raise RemoteViewerError(f"the remote viewer did not start within {self.start_timeout}s")

    def _kill_remote(self, pid: int) -> bool:
        """SIGTERM, wait up to 10 s, then SIGKILL; True when the process is gone."""
        if self._client is None:
            return False
        script = (
            f"kill {pid} 2>/dev/null; i=0; while {_alive(pid)}; do "
            f"i=$((i+1)); if [ $i -gt 100 ]; then kill -9 {pid}; sleep 0.2; break; fi; "
            "sleep 0.1; done; "
            f"{_alive(pid)} && echo alive || echo gone"
        )
        try:
            _, out, _ = run_command(self._client, script, timeout=30)
        except (paramiko.SSHException, OSError):
            return False
        return out.strip().endswith("gone")

    def start(self) -> RemoteSession:
        """Connect, start the remote viewer, open the tunnel, register the session."""
        self._connect()
        try:
            assert self._client is not None
            python = find_remote_python(self._client, self.python)
            pid, rport, rdir = self._start_viewer(python)
            self._forwarder = PortForwarder(
                self._transport, "127.0.0.1", rport, local_port=self._local_port_wanted
            ).start()
        except BaseException:
            if self._client is not None:
                self._client.close()
            raise
        self.record = SessionRecord(
            id=self.id,
            user=self.target.user,
            host=self.target.host,
            port=self.target.port,
            remote_python=python,
            remote_pid=pid,
            remote_port=rport,
            remote_dir=rdir,
            local_port=self._forwarder.local_port,
            owner_pid=os.getpid(),
            started_at=datetime.now(UTC).isoformat(),
            remote_home=self.remote_home,
        )
        self._save()
        with _ACTIVE_LOCK:
            _ACTIVE[self.id] = self
        self._watchdog = threading.Thread(target=self._watch, name="wt-remote-watch", daemon=True)
        self._watchdog.start()
        return self

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<local_port>/``."""
        assert self.record is not None
        return self.record.url

    def _save(self) -> None:
        if self.record is None:
            return
        path = registry_dir() / f"{self.id}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record.to_dict(), indent=1))
        tmp.replace(path)

    def _heartbeat(self) -> None:
        """Tell the remote viewer we are still here (it exits when the beats stop)."""
        if self._client is None or self.record is None:
            return
        with contextlib.suppress(paramiko.SSHException, OSError):
            run_command(
                self._client, f"touch {quote(self.record.remote_dir)}/heartbeat", timeout=10
            )

    def _watch(self) -> None:
        backoff = 1.0
        beat_every = max(0.5, min(15.0, self.heartbeat_timeout / 4))
        last_beat = time.monotonic()
        while not self._stop.wait(min(1.0, beat_every)):
            transport = self._transport()
            if transport is not None and transport.is_active():
                backoff = 1.0
                if time.monotonic() - last_beat >= beat_every:
                    with self._lock:
                        if not self._stop.is_set():
                            self._heartbeat()
                    last_beat = time.monotonic()
                continue
            if not self.reconnect_enabled:
                self._mark("disconnected")
                return
            self._mark("reconnecting")
            try:
                with self._lock:
                    if self._stop.is_set():
                        return
                    self.reconnect()
                backoff = 1.0
            except RemoteError as exc:
                log.warning("reconnect to %s failed: %s", self.target.host, exc)
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 30.0)

    def _mark(self, status: str) -> None:
        if self.record is not None and self.record.status != status:
            self.record.status = status
            self._save()

    def reconnect(self) -> None:
        """Re-open the SSH connection; restart the remote viewer if it died meanwhile."""
        assert self.record is not None
        if self._client is not None:
            self._client.close()
        self._connect()
        assert self._client is not None
        status, _, _ = run_command(self._client, _alive(self.record.remote_pid))
        if status != 0:
            pid, rport, rdir = self._start_viewer(self.record.remote_python)
            self.record.remote_pid, self.record.remote_port, self.record.remote_dir = (
                pid,
                rport,
                rdir,
            )
            if self._forwarder is not None:
                self._forwarder.remote_port = rport
        self.record.reconnects += 1
        self.record.status = "connected"
        self._save()

    def abandon(self) -> None:
        """Vanish without stopping anything remotely (what a killed local process looks like).

        Used by tests to prove the remote viewer stops itself once heartbeats end.
        """
        self._stop.set()
        if self._forwarder is not None:
            self._forwarder.stop()
        if self._client is not None:
            self._client.close()
        with _ACTIVE_LOCK:
            _ACTIVE.pop(self.id, None)
        (registry_dir() / f"{self.id}.json").unlink(missing_ok=True)

    def drop_connection(self) -> None:
        """Close the SSH transport without stopping (what a network failure looks like)."""
        transport = self._transport()
        if transport is not None:
            transport.close()

    def stop(self) -> bool:
        """Stop the remote viewer, close the tunnel and SSH, forget the session.

        Returns:
            True when the remote viewer process is confirmed gone.
        """
        self._stop.set()
        gone = False
        with self._lock:
            if self._forwarder is not None:
                self._forwarder.stop()
            if self.record is not None:
                transport = self._transport()
                if transport is None or not transport.is_active():
                    with contextlib.suppress(RemoteError):
                        self._connect()
                gone = self._kill_remote(self.record.remote_pid)
                if gone and self._client is not None:
                    with contextlib.suppress(paramiko.SSHException, OSError):
                        run_command(self._client, f"rm -rf {quote(self.record.remote_dir)}")
            if self._client is not None:
                self._client.close()
        with _ACTIVE_LOCK:
            _ACTIVE.pop(self.id, None)
        (registry_dir() / f"{self.id}.json").unlink(missing_ok=True)
        return gone

    # -- remote files ---------------------------------------------------------------------------
    def list_files(self, path: str = "") -> list[dict[str, Any]]:
        """List a directory under the remote WORKBENCH_HOME (SFTP), refusing traversal.

        Raises:
            UnsafePathError: for ``..``, absolute paths, or symlinks resolving outside the root.
        """
        rel = validate_relative_path(path, "path").as_posix() if path else ""
        assert self._client is not None and self.record is not None
        sftp = self._client.open_sftp()
        try:
            # remote_dir is <home>/remote-viewers/<id>; the browsable root is <home>.
            root = sftp.normalize(posixpath.dirname(posixpath.dirname(self.record.remote_dir)))
            target = sftp.normalize(posixpath.join(root, rel)) if rel else root
            if target != root and not target.startswith(root.rstrip("/") + "/"):
                raise UnsafePathError("path", f"{path!r} resolves outside the remote root")
            out = []
            for attr in sftp.listdir_attr(target):
                mode = attr.st_mode or 0
                out.append(
                    {
                        "name": attr.filename,
                        "path": posixpath.join(rel, attr.filename) if rel else attr.filename,
                        "type": "dir"
                        if stat.S_ISDIR(mode)
                        else "link"
                        if stat.S_ISLNK(mode)
                        else "file",
                        "size": attr.st_size,
                    }
                )
            return sorted(out, key=lambda e: (e["type"] != "dir", e["name"]))
        except FileNotFoundError as exc:
            raise UnsafePathError("path", f"{path!r} does not exist on the remote host") from exc
        finally:
            sftp.close()


def start_session(target: SSHTarget, **kwargs: Any) -> RemoteSession:
    """Create and start a :class:`RemoteSession` (see its arguments)."""
    return RemoteSession(target, **kwargs).start()


def get_active_session(session_id: str) -> RemoteSession | None:
    """The live session object when this process owns it."""
    with _ACTIVE_LOCK:
        return _ACTIVE.get(session_id)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_sessions(prune: bool = True) -> list[SessionRecord]:
    """Registered sessions; entries whose owning process is gone are pruned."""
    out = []
    for path in sorted(registry_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text())
            data.pop("url", None)
            rec = SessionRecord(**data)
        except (ValueError, TypeError):
            continue
        if prune and not _pid_alive(rec.owner_pid):
            path.unlink(missing_ok=True)
            continue
        out.append(rec)
    return out


def stop_session(session_id: str, timeout: float = 30.0) -> bool:
    """Stop a session whether this process or another (CLI) owns it.

    Returns:
        True when the session is gone from the registry.

    Raises:
        UnsafePathError: for a malformed id; KeyError when no such session is registered.
    """
    validate_name(session_id, "session_id")
    live = get_active_session(session_id)
    if live is not None:
        live.stop()
        return True
    path = registry_dir() / f"{session_id}.json"
    if not path.exists():
        raise KeyError(session_id)
    rec = json.loads(path.read_text())
    owner = int(rec.get("owner_pid", 0))
    if owner and _pid_alive(owner) and owner != os.getpid():
        os.kill(owner, signal.SIGTERM)  # the owner's handler stops the viewer and cleans up
        deadline = time.monotonic() + timeout
        while path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    else:
        path.unlink(missing_ok=True)
    return not path.exists()


@atexit.register
def _stop_all() -> None:
    with _ACTIVE_LOCK:
        sessions = list(_ACTIVE.values())
    for s in sessions:
        with contextlib.suppress(Exception):
            s.stop()
