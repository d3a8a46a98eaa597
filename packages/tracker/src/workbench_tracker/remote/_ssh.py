"""SSH connections with strict host-key checking (paramiko).

A host key is accepted only when it is already in ``known_hosts``, or when the user explicitly
asked to trust it (``trust_host_key=True``, or the exact ``SHA256:...`` fingerprint). An unknown
key is refused with :class:`UnknownHostKeyError`, whose message gives the ``ssh-keyscan`` line and
the ``--trust-host-key`` flag; a *changed* key is refused with :class:`HostKeyChangedError`
and is never trusted by a flag (that is what a man-in-the-middle looks like).

Error tree::

    RemoteError
     +-- HostKeyError
     |    +-- UnknownHostKeyError
     |    +-- HostKeyChangedError
     +-- RemoteAuthError
     +-- RemoteConnectError
     +-- RemotePythonNotFoundError
     +-- RemoteViewerError
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from workbench_tracker.secrets import get_secret_store

__all__ = [
    "HostKeyChangedError",
    "HostKeyError",
    "RefuseUnknownHostKeyPolicy",
    "RemoteAuthError",
    "RemoteConnectError",
    "RemoteError",
    "RemotePythonNotFoundError",
    "RemoteViewerError",
    "SSHTarget",
    "UnknownHostKeyError",
    "connect_ssh",
    "fingerprint",
    "known_hosts_name",
    "parse_target",
    "run_command",
]


class RemoteError(Exception):
    """Base of every remote-viewing error."""


class HostKeyError(RemoteError):
    """The server's host key could not be verified."""


class UnknownHostKeyError(HostKeyError):
    """The host is not in known_hosts; the message says how to trust it."""

    def __init__(self, host: str, port: int, key: paramiko.PKey, known_hosts: Path) -> None:
        self.host, self.port, self.key = host, port, key
        self.fingerprint = fingerprint(key)
        port_flag = f"-p {port} " if port != 22 else ""
        super().__init__(
            f"host key for {known_hosts_name(host, port)} is unknown "
            f"({key.get_name()} {self.fingerprint}). Verify this fingerprint with the server's "
            f"administrator, then either add it with\n"
            f"    ssh-keyscan {port_flag}-t {key.get_name()} {host} >> {known_hosts}\n"
            f"or connect again with --trust-host-key {self.fingerprint}"
        )


class HostKeyChangedError(HostKeyError):
    """The host presented a different key than known_hosts records (possible MITM)."""

    def __init__(self, host: str, port: int, known_hosts: Path, got: str, expected: str) -> None:
        self.host, self.port = host, port
        super().__init__(
            f"HOST KEY CHANGED for {known_hosts_name(host, port)}: known_hosts has {expected}, "
            f"the server sent {got}. This can mean someone is intercepting the connection. "
            f"If the server was really re-keyed, remove the old entry with\n"
            f"    ssh-keygen -R '{known_hosts_name(host, port)}' -f {known_hosts}\n"
            f"and verify the new key before trusting it."
        )


class RemoteAuthError(RemoteError):
    """Authentication failed (key, agent and password all refused)."""


class RemoteConnectError(RemoteError):
    """The TCP/SSH connection could not be made."""


class RemotePythonNotFoundError(RemoteError):
    """No Python with workbench_tracker importable was found on the remote host."""


class RemoteViewerError(RemoteError):
    """The remote viewer failed to start or stop."""


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH-style ``SHA256:...`` fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """The name OpenSSH writes in known_hosts: ``host`` on 22, else ``[host]:port``."""
    return host if port == 22 else f"[{host}]:{port}"


@dataclass
class SSHTarget:
    """Where and how to connect.

    Attributes:
        host, user, port: the server.
        identity: a private key file.
        password: a password (kept in memory only; see ``save_password``).
        passphrase: the identity's passphrase.
        use_agent: try keys from the SSH agent.
        known_hosts: the known_hosts file (default ``~/.ssh/known_hosts``).
        trust_host_key: ``True`` to accept and record an unknown key, or the fingerprint that the
            unknown key must have. Never overrides a *changed* key.
        save_password: store password/passphrase in the secret store for later connections.
    """

    host: str
    user: str
    port: int = 22
    identity: str | None = None
    password: str | None = None
    passphrase: str | None = None
    use_agent: bool = True
    look_for_keys: bool = True
    known_hosts: Path | None = None
    trust_host_key: bool | str = False
    save_password: bool = False
    timeout: float = 15.0

    @property
    def known_hosts_path(self) -> Path:
        """The known_hosts file in use."""
        return Path(self.known_hosts or Path.home() / ".ssh" / "known_hosts").expanduser()

    @property
    def secret_key(self) -> str:
        """The secret-store key of this target's password."""
        return f"ssh:{self.user}@{self.host}:{self.port}"

    def describe(self) -> dict[str, Any]:
        """Public, secret-free description (what the registry and API show)."""
        return {"host": self.host, "user": self.user, "port": self.port, "identity": self.identity}


def parse_target(spec: str, port: int | None = None) -> tuple[str, str, int]:
    """Parse ``user@host[:port]``; the user defaults to the local user.

    Raises:
        ValueError: naming the ``target`` field when malformed.
    """
    if not isinstance(spec, str) or not spec or any(c.isspace() for c in spec):
        raise ValueError("target: must look like user@host or user@host:port")
    user, _, hostport = spec.rpartition("@")
    user = user or os.environ.get("USER") or "root"
    host, sep, port_text = hostport.rpartition(":") if hostport.count(":") == 1 else ("", "", "")
    if not sep:
        host = hostport
    if port_text:
        if not port_text.isdigit():
            raise ValueError(f"target: port {port_text!r} is not a number")
        port = port or int(port_text)
    host = host.strip("[]")
    if not host or host.startswith("-") or user.startswith("-"):
        raise ValueError("target: host and user must not be empty or start with '-'")
    p = port or 22
    if not 0 < p < 65536:
        raise ValueError("port: must be between 1 and 65535")
    return user, host, p


class RefuseUnknownHostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown host keys unless the user explicitly trusted this one.

    Args:
        known_hosts: where a trusted key is recorded.
        trust: ``True`` (trust whatever key, recorded), a ``SHA256:...`` fingerprint the key must
            match, or ``False`` (refuse).
    """

    def __init__(self, known_hosts: Path, trust: bool | str = False) -> None:
        self.known_hosts = known_hosts
        self.trust = trust

    def missing_host_key(
        self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey
    ) -> None:
        host, port = hostname, 22
        if hostname.startswith("["):
            host, _, port_text = hostname[1:].partition("]:")
            port = int(port_text or 22)
        fp = fingerprint(key)
        if self.trust is True or (isinstance(self.trust, str) and self.trust == fp):
            client.get_host_keys().add(hostname, key.get_name(), key)
            self.known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            line = f"{hostname} {key.get_name()} {key.get_base64()}\n"
            fd = os.open(self.known_hosts, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as fh:
                fh.write(line)
            return
        raise UnknownHostKeyError(host, port, key, self.known_hosts)


def connect_ssh(target: SSHTarget) -> paramiko.SSHClient:
    """Open an authenticated SSH connection with verified host key.

    The password (or passphrase) comes from ``target`` or, when absent, the secret store; with
    ``save_password`` a given one is stored there (never in plain text).

    Raises:
        UnknownHostKeyError, HostKeyChangedError, RemoteAuthError, RemoteConnectError.
    """
    secrets = get_secret_store()
    password = target.password
    if password is None:
        password = secrets.get(target.secret_key)
    passphrase = target.passphrase
    if passphrase is None and target.identity:
        passphrase = secrets.get(f"ssh-key:{Path(target.identity).expanduser().resolve()}")
    client = paramiko.SSHClient()
    kh = target.known_hosts_path
    if kh.exists():
        client.load_host_keys(str(kh))
    client.set_missing_host_key_policy(RefuseUnknownHostKeyPolicy(kh, target.trust_host_key))
    try:
        client.connect(
            target.host,
            port=target.port,
            username=target.user,
            password=password,
            key_filename=str(Path(target.identity).expanduser()) if target.identity else None,
            passphrase=passphrase,
            allow_agent=target.use_agent,
            look_for_keys=target.look_for_keys and not target.identity,
            timeout=target.timeout,
            banner_timeout=target.timeout,
            auth_timeout=target.timeout,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise HostKeyChangedError(
            target.host, target.port, kh, fingerprint(exc.key), fingerprint(exc.expected_key)
        ) from exc
    except HostKeyError:
        client.close()
        raise
    except paramiko.AuthenticationException as exc:
        client.close()
        raise RemoteAuthError(
            f"authentication to {target.user}@{target.host}:{target.port} failed: {exc}"
        ) from exc
    except (TimeoutError, OSError, paramiko.SSHException) as exc:
        client.close()
        raise RemoteConnectError(
            f"could not connect to {target.host}:{target.port}: {exc}"
        ) from exc
    if target.save_password:
        if target.password:
            secrets.set(target.secret_key, target.password)
        if target.passphrase and target.identity:
            key_path = Path(target.identity).expanduser().resolve()
            secrets.set(f"ssh-key:{key_path}", target.passphrase)
    return client


def run_command(
    client: paramiko.SSHClient, command: str, timeout: float = 30.0
) -> tuple[int, str, str]:
    """Run a shell command remotely; return (exit status, stdout, stderr)."""
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read().decode(errors="replace")
    err = stderr.read().decode(errors="replace")
    return stdout.channel.recv_exit_status(), out, err


def quote(value: str) -> str:
    """Shell-quote for the remote POSIX shell."""
    return shlex.quote(value)
