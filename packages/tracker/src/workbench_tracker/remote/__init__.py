"""Remote viewing over SSH: run the tracker viewer on another machine and tunnel to it."""

from __future__ import annotations

from workbench_tracker.remote._forward import PortForwarder
from workbench_tracker.remote._session import (
    PYTHON_CANDIDATES,
    RemoteSession,
    SessionRecord,
    find_remote_python,
    get_active_session,
    list_sessions,
    registry_dir,
    start_session,
    stop_session,
)
from workbench_tracker.remote._ssh import (
    HostKeyChangedError,
    HostKeyError,
    RefuseUnknownHostKeyPolicy,
    RemoteAuthError,
    RemoteConnectError,
    RemoteError,
    RemotePythonNotFoundError,
    RemoteViewerError,
    SSHTarget,
    UnknownHostKeyError,
    connect_ssh,
    fingerprint,
    known_hosts_name,
    parse_target,
)

__all__ = [
    "PYTHON_CANDIDATES",
    "HostKeyChangedError",
    "HostKeyError",
    "PortForwarder",
    "RefuseUnknownHostKeyPolicy",
    "RemoteAuthError",
    "RemoteConnectError",
    "RemoteError",
    "RemotePythonNotFoundError",
    "RemoteSession",
    "RemoteViewerError",
    "SSHTarget",
    "SessionRecord",
    "UnknownHostKeyError",
    "connect_ssh",
    "find_remote_python",
    "fingerprint",
    "get_active_session",
    "known_hosts_name",
    "list_sessions",
    "parse_target",
    "registry_dir",
    "start_session",
    "stop_session",
]
