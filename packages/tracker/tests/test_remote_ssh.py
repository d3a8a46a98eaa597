"""Remote viewing against a real OpenSSH server on loopback (Debian's /usr/sbin/sshd).

The "remote host" is this machine, so the venv Python that has workbench_tracker is what the
remote side runs. Each test gets its own sshd with a temporary host key and authorized key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import paramiko
import pytest
from _extras_fixtures import free_port

from workbench_tracker.remote import (
    HostKeyChangedError,
    RemotePythonNotFoundError,
    SSHTarget,
    UnknownHostKeyError,
    connect_ssh,
    find_remote_python,
    fingerprint,
    known_hosts_name,
    list_sessions,
    start_session,
    stop_session,
)

SSHD = "/usr/sbin/sshd"

pytestmark = [
    pytest.mark.ssh,
    pytest.mark.skipif(not Path(SSHD).exists(), reason="needs Debian's openssh-server (sshd)"),
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen"),
]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


class SSHServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.host_key = root / "host_ed25519"
        self.user_key = root / "id_ed25519"
        _keygen(self.host_key)
        _keygen(self.user_key)
        auth = root / "authorized_keys"
        auth.write_text(self.user_key.with_suffix(".pub").read_text())
        auth.chmod(0o600)
        self.config = root / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"AuthorizedKeysFile {auth}\nPidFile {root / 'sshd.pid'}\nStrictModes no\n"
            "UsePAM no\nPermitRootLogin yes\nPasswordAuthentication no\n"
            "AllowTcpForwarding yes\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
        )
        self.log = (root / "sshd.log").open("w")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)], stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                import socket

                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((root / "sshd.log").read_text()) from None
                time.sleep(0.05)
        self.user = os.environ.get("USER") or subprocess.check_output(["whoami"], text=True).strip()
        self.public_host_key = paramiko.Ed25519Key(filename=str(self.host_key))

    def known_hosts(self, path: Path) -> Path:
        key = self.public_host_key
        path.write_text(
            f"{known_hosts_name('127.0.0.1', self.port)} {key.get_name()} {key.get_base64()}\n"
        )
        return path

    def target(self, known_hosts: Path, **kw: object) -> SSHTarget:
        return SSHTarget(
            host="127.0.0.1",
            user=self.user,
            port=self.port,
            identity=str(self.user_key),
            use_agent=False,
            known_hosts=known_hosts,
            **kw,  # type: ignore[arg-type]
        )

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture
def sshd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "local-home"))
    monkeypatch.setenv("WORKBENCH_SECRETS_BACKEND", "fernet")
    if os.geteuid() == 0 and not Path("/run/sshd").is_dir():
        # sshd running as root insists on its privilege-separation directory (Debian's init
        # script normally creates it at boot).
        try:
            Path("/run/sshd").mkdir(mode=0o755, parents=True)
        except OSError as exc:
            pytest.skip(f"sshd needs /run/sshd and it cannot be created: {exc}")
    root = tmp_path / "sshd"
    root.mkdir()
    server = SSHServer(root)
    yield server
    server.stop()


def test_unknown_host_key_is_refused_with_instructions(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    with pytest.raises(UnknownHostKeyError) as exc:
        connect_ssh(sshd.target(kh))
    msg = str(exc.value)
    assert f"ssh-keyscan -p {sshd.port}" in msg and "--trust-host-key" in msg
    assert fingerprint(sshd.public_host_key) in msg
    assert not kh.exists()  # nothing trusted silently


def test_trusting_the_exact_fingerprint_records_it_then_connects(sshd, tmp_path):
    kh = tmp_path / "known_hosts"
    with pytest.raises(UnknownHostKeyError):
        connect_ssh(sshd.target(kh, trust_host_key="SHA256:not-the-right-one"))
    client = connect_ssh(sshd.target(kh, trust_host_key=fingerprint(sshd.public_host_key)))
    client.close()
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519" in kh.read_text()
    connect_ssh(sshd.target(kh)).close()  # now known: no flag needed


def test_changed_host_key_is_refused_even_with_trust_flag(sshd, tmp_path):
    other = tmp_path / "other_key"
    _keygen(other)
    key = paramiko.Ed25519Key(filename=str(other))
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[127.0.0.1]:{sshd.port} {key.get_name()} {key.get_base64()}\n")
    with pytest.raises(HostKeyChangedError, match="ssh-keygen -R"):
        connect_ssh(sshd.target(kh, trust_host_key=True))


def test_python_discovery_reports_what_it_tried(sshd, tmp_path, monkeypatch):
    from workbench_tracker.remote import _session

    client = connect_ssh(sshd.target(sshd.known_hosts(tmp_path / "kh")))
    try:
        assert find_remote_python(client, sys.executable) == sys.executable
        # With only a bogus configured path to try, the error lists what was attempted.
        monkeypatch.setattr(_session, "PYTHON_CANDIDATES", [])
        with pytest.raises(RemotePythonNotFoundError, match="/nonexistent/python"):
            find_remote_python(client, "/nonexistent/python")
    finally:
        client.close()


def _seed_remote_run(remote_home: Path) -> str:
    import workbench_tracker as wt
    from workbench_tracker.store.sql import SQLStore

    store = SQLStore(f"sqlite:///{remote_home / 'tracker.db'}")
    with wt.init(project="remote-proj", name="far", store=store, capture_env=False) as run:
        for step in range(5):
            run.log({"loss": 1.0 / (step + 1)})
    store.close()
    return run.id


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_remote_viewer_through_tunnel_then_reconnect_and_clean_stop(sshd, tmp_path):
    remote_home = tmp_path / "remote-home"
    remote_home.mkdir()
    run_id = _seed_remote_run(remote_home)
    target = sshd.target(sshd.known_hosts(tmp_path / "kh"))
    session = start_session(
        target, python=sys.executable, remote_home=str(remote_home), keepalive=5
    )
    try:
        rec = session.record
        assert rec is not None and _pid_alive(rec.remote_pid)
        assert [s.id for s in list_sessions()] == [session.id]
        with httpx.Client(base_url=session.url, timeout=30) as c:
            assert c.get("/healthz").json() == {"status": "ok"}
            keys = c.get(f"/api/runs/{run_id}/metrics").json()["keys"]
            assert keys["loss"]["count"] == 5
            series = c.get(
                f"/api/runs/{run_id}/series", params={"key": "loss", "method": "none"}
            ).json()
            assert series["steps"] == [0, 1, 2, 3, 4]
            # WebSocket upgrade and frames both ways go through the same tunnel.
            from websockets.sync.client import connect as ws_connect

            ws_url = session.url.replace("http://", "ws://") + f"api/runs/{run_id}/ws"
            with ws_connect(ws_url, open_timeout=30) as ws:
                ws.send(json.dumps({"after": {"loss": 2}}))
                kinds = set()
                deadline = time.monotonic() + 30
                while "points" not in kinds and time.monotonic() < deadline:
                    msg = json.loads(ws.recv(timeout=30))
                    kinds.add(msg["type"])
                assert "status" in kinds and "points" in kinds
            files = session.list_files("")
            assert "tracker.db" in {f["name"] for f in files}
            with pytest.raises(ValueError, match="path"):
                session.list_files("../..")

        session.drop_connection()  # what a network failure looks like
        deadline = time.monotonic() + 30
        while rec.reconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rec.reconnects == 1 and rec.status == "connected"
        with httpx.Client(base_url=session.url, timeout=30) as c:
            assert c.get("/healthz").status_code == 200
        registry = json.loads(
            next(iter((tmp_path / "local-home/remote/sessions").glob("*.json"))).read_text()
        )
        assert "password" not in json.dumps(registry)
    finally:
        pid = session.record.remote_pid if session.record else None
        assert stop_session(session.id)
    assert pid is not None
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pid_alive(pid), "remote viewer still running after stop"
    assert list_sessions() == []
    with pytest.raises(httpx.TransportError):
        httpx.get(session.url + "healthz", timeout=2)


@pytest.mark.slow
def test_cli_connect_list_and_stop_from_another_process(sshd, tmp_path):
    from click.testing import CliRunner

    from workbench_tracker.cli import tracker

    remote_home = tmp_path / "remote-home"
    remote_home.mkdir()
    kh = sshd.known_hosts(tmp_path / "kh")
    runner = CliRunner()
    refused = runner.invoke(
        tracker,
        [
            "remote",
            "connect",
            f"{sshd.user}@127.0.0.1",
            "--port",
            str(sshd.port),
            "-i",
            str(sshd.user_key),
            "--known-hosts",
            str(tmp_path / "empty_kh"),
            "--no-agent",
            "--python",
            sys.executable,
        ],
    )
    assert refused.exit_code != 0 and "--trust-host-key" in refused.output
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from workbench_tracker.cli import tracker; tracker()",
            "remote",
            "connect",
            f"{sshd.user}@127.0.0.1:{sshd.port}",
            "-i",
            str(sshd.user_key),
            "--known-hosts",
            str(kh),
            "--no-agent",
            "--python",
            sys.executable,
            "--remote-home",
            str(remote_home),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "viewer at http://127.0.0.1:" in line, line
        url = line.split("viewer at ", 1)[1].split()[0]
        assert httpx.get(url + "healthz", timeout=30).json() == {"status": "ok"}
        listed = runner.invoke(tracker, ["remote", "list", "--json"])
        [session] = json.loads(listed.output)
        assert session["url"] == url and session["owner_pid"] == proc.pid
        stopped = runner.invoke(tracker, ["remote", "stop", session["id"]])
        assert stopped.exit_code == 0 and "stopped" in stopped.output, stopped.output
        assert proc.wait(30) == 0
        assert not _pid_alive(session["remote_pid"])
        assert json.loads(runner.invoke(tracker, ["remote", "list", "--json"]).output) == []
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_remote_sessions_api_connect_list_files_and_stop(sshd, tmp_path, monkeypatch):
    from _extras_fixtures import LiveServer

    from workbench_tracker.store.sql import SQLStore
    from workbench_tracker.viewer import create_app

    ssh_dir = tmp_path / "dot-ssh"
    ssh_dir.mkdir()
    shutil.copy(sshd.user_key, ssh_dir / "id_ed25519")
    monkeypatch.setenv("WORKBENCH_SSH_DIR", str(ssh_dir))
    remote_home = tmp_path / "remote-home"
    remote_home.mkdir()
    store = SQLStore(f"sqlite:///{tmp_path / 'local.db'}")
    body = {
        "target": f"{sshd.user}@127.0.0.1:{sshd.port}",
        "identity": "id_ed25519",
        "python": sys.executable,
        "remote_home": str(remote_home),
        "use_agent": False,
    }
    with (
        LiveServer(create_app(store)) as server,
        httpx.Client(base_url=server.url, timeout=60) as c,
    ):
        refused = c.post("/api/remote/sessions", json=body)
        assert refused.status_code == 403
        assert refused.json()["error"]["param"] == "trust_host_key"
        assert "ssh-keyscan" in refused.json()["error"]["message"]
        sshd.known_hosts(ssh_dir / "known_hosts")
        r = c.post("/api/remote/sessions", json=body)
        assert r.status_code == 200, r.text
        session = r.json()
        assert [s["id"] for s in c.get("/api/remote/sessions").json()["sessions"]] == [
            session["id"]
        ]
        assert httpx.get(session["url"] + "healthz", timeout=30).status_code == 200
        files = c.get(f"/api/remote/sessions/{session['id']}/files").json()["entries"]
        assert "remote-viewers" in {f["name"] for f in files}
        bad = c.get(f"/api/remote/sessions/{session['id']}/files", params={"path": "../.."})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "path"
        stopped = c.delete(f"/api/remote/sessions/{session['id']}")
        assert stopped.json()["stopped"] is True
        assert c.get("/api/remote/sessions").json()["sessions"] == []
        assert c.delete(f"/api/remote/sessions/{session['id']}").status_code == 404
    assert not _pid_alive(session["remote_pid"])
    store.close()


@pytest.mark.slow
def test_remote_viewer_stops_itself_when_the_local_side_vanishes(sshd, tmp_path):
    remote_home = tmp_path / "remote-home"
    remote_home.mkdir()
    target = sshd.target(sshd.known_hosts(tmp_path / "kh"))
    session = start_session(
        target, python=sys.executable, remote_home=str(remote_home), heartbeat_timeout=2.0
    )
    assert session.record is not None
    pid = session.record.remote_pid
    time.sleep(3)  # heartbeats keep it alive past its timeout while we are connected
    assert _pid_alive(pid)
    session.abandon()  # no stop(), no kill: the local process is simply gone
    deadline = time.monotonic() + 30
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _pid_alive(pid), "remote viewer kept running without heartbeats"


def test_key_passphrase_is_saved_encrypted_and_reused(sshd, tmp_path):
    locked = tmp_path / "locked_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "open-sesame-42", "-f", str(locked)], check=True
    )
    auth = sshd.root / "authorized_keys"
    auth.write_text(auth.read_text() + locked.with_suffix(".pub").read_text())
    kh = sshd.known_hosts(tmp_path / "kh")
    base = dict(
        host="127.0.0.1",
        user=sshd.user,
        port=sshd.port,
        identity=str(locked),
        use_agent=False,
        known_hosts=kh,
    )
    from workbench_tracker.remote import RemoteAuthError

    with pytest.raises((RemoteAuthError, paramiko.SSHException)):
        connect_ssh(SSHTarget(**base))  # type: ignore[arg-type]
    connect_ssh(SSHTarget(**base, passphrase="open-sesame-42", save_password=True)).close()  # type: ignore[arg-type]
    connect_ssh(SSHTarget(**base)).close()  # type: ignore[arg-type]  # from the secret store
    home = Path(os.environ["WORKBENCH_HOME"])
    stored = list((home / "secrets").iterdir())
    assert stored and all(b"open-sesame-42" not in f.read_bytes() for f in stored)


@pytest.mark.skipif(shutil.which("ssh-agent") is None, reason="needs ssh-agent")
def test_connects_with_a_key_from_the_ssh_agent(sshd, tmp_path, monkeypatch):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(
            ["ssh-add", "-q", str(sshd.user_key)], env=env, check=True, capture_output=True
        )
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        target = SSHTarget(
            host="127.0.0.1",
            user=sshd.user,
            port=sshd.port,
            use_agent=True,
            look_for_keys=False,
            known_hosts=sshd.known_hosts(tmp_path / "kh"),
        )
        client = connect_ssh(target)
        _, out, _ = client.exec_command("echo agent-ok")
        assert out.read().strip() == b"agent-ok"
        client.close()
    finally:
        agent.terminate()
        agent.wait(10)


@pytest.mark.slow
def test_reconnect_restarts_a_remote_viewer_that_died(sshd, tmp_path):
    import signal

    remote_home = tmp_path / "remote-home"
    remote_home.mkdir()
    target = sshd.target(sshd.known_hosts(tmp_path / "kh"))
    session = start_session(target, python=sys.executable, remote_home=str(remote_home))
    try:
        rec = session.record
        assert rec is not None
        old_pid = rec.remote_pid
        os.kill(old_pid, signal.SIGKILL)  # the remote host is this machine
        session.drop_connection()
        deadline = time.monotonic() + 60
        while rec.reconnects == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rec.reconnects == 1 and rec.remote_pid != old_pid
        assert _pid_alive(rec.remote_pid)
        with httpx.Client(base_url=session.url, timeout=30) as c:
            assert c.get("/healthz").json() == {"status": "ok"}
    finally:
        new_pid = session.record.remote_pid if session.record else None
        session.stop()
    assert new_pid is not None and not _pid_alive(new_pid)
