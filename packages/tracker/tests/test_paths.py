"""Path safety: helpers, and every path- or name-taking extras endpoint answers 400."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from _extras_fixtures import LiveServer

import workbench_tracker as wt
from workbench_tracker.paths import UnsafePathError, safe_join, validate_name
from workbench_tracker.secrets import FernetSecretStore
from workbench_tracker.store.sql import SQLStore
from workbench_tracker.viewer import create_app


@pytest.mark.parametrize(
    "bad", ["..", "../x", "a/../../b", "/etc/passwd", "~/x", "C:/x", "a\\b", "a\x00b"]
)
def test_safe_join_refuses_traversal_and_absolute_paths(tmp_path: Path, bad: str):
    with pytest.raises(UnsafePathError) as exc:
        safe_join(tmp_path, bad, "logdir")
    assert exc.value.field == "logdir"


def test_safe_join_refuses_symlink_escaping_root_but_allows_inside(tmp_path: Path):
    root = tmp_path / "root"
    (root / "inner").mkdir(parents=True)
    (root / "in-link").symlink_to(root / "inner")
    (root / "out-link").symlink_to(tmp_path)
    assert safe_join(root, "in-link/f") == (root / "inner" / "f").resolve()
    with pytest.raises(UnsafePathError, match="outside"):
        safe_join(root, "out-link/f")


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "-x", "a b", "x" * 200])
def test_validate_name_rejects_non_names(bad: str):
    with pytest.raises(UnsafePathError):
        validate_name(bad, "name")


def test_secrets_are_encrypted_at_rest_with_a_private_key_file(tmp_path: Path):
    store = FernetSecretStore(tmp_path / "secrets")
    store.set("ssh:me@host:22", "hunter2-very-secret")
    assert store.get("ssh:me@host:22") == "hunter2-very-secret"
    for f in (tmp_path / "secrets").iterdir():
        assert b"hunter2" not in f.read_bytes()
    assert os.stat(store.key_path).st_mode & 0o777 == 0o600
    assert os.stat(store.data_path).st_mode & 0o077 == 0
    store.delete("ssh:me@host:22")
    assert store.get("ssh:me@host:22") is None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("paths")
    mp = pytest.MonkeyPatch()
    home = tmp / "home"
    mp.setenv("WORKBENCH_HOME", str(home))
    mp.setenv("WORKBENCH_SSH_DIR", str(tmp / "ssh"))
    (tmp / "ssh").mkdir()
    store = SQLStore(f"sqlite:///{tmp / 'tracker.db'}")
    data = tmp / "f.txt"
    data.write_text("x")
    with wt.init(project="p", store=store, capture_env=False) as run:
        run.log({"loss": 1.0})
        run.log_artifact(data, "ds", "dataset")
    with (
        LiveServer(create_app(store)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        yield client
    store.close()
    mp.undo()


DOT = "%2E%2E"  # '..' percent-encoded so the client does not normalise it away

CASES = [
    ("GET", f"/api/artifacts/{DOT}/versions?project=p", None, "name"),
    ("GET", f"/api/artifacts/ds/{DOT}?project=p", None, "selector"),
    ("GET", f"/api/artifacts/{DOT}/latest?project=p", None, "name"),
    ("GET", "/api/artifacts/ds/latest/download?project=p&path=../../etc/passwd", None, "path"),
    ("GET", "/api/artifacts/ds/latest/download?project=p&path=/etc/passwd", None, "path"),
    ("GET", f"/api/artifacts/ds/{DOT}/download?project=p", None, "selector"),
    ("PUT", f"/api/artifacts/ds/aliases/{DOT}?project=p", {"version": "v0"}, "alias"),
    ("PUT", "/api/artifacts/ds/aliases/best?project=p", {"version": "../v0"}, "version"),
    ("DELETE", f"/api/artifacts/{DOT}?project=p", None, "name"),
    ("DELETE", "/api/artifacts/ds?project=p&version=../v0", None, "version"),
    ("DELETE", f"/api/artifacts/ds/aliases/{DOT}?project=p", None, "alias"),
    ("GET", "/api/lineage?project=p&artifact=../ds", None, "ref"),
    ("POST", "/api/export/files", {"format": "csv", "path": "../../out.csv"}, "path"),
    ("POST", "/api/export/files", {"format": "csv", "path": "/tmp/out.csv"}, "path"),
    ("POST", "/api/export/files", {"format": "csv", "path": "escape/out.csv"}, "path"),
    ("POST", "/api/import/tensorboard", {"logdir": "../..", "project": "p"}, "logdir"),
    ("POST", "/api/import/tensorboard", {"logdir": "/etc", "project": "p"}, "logdir"),
    ("POST", "/api/import/tensorboard", {"logdir": "escape", "project": "p"}, "logdir"),
    (
        "POST",
        "/api/remote/sessions",
        {"target": "me@127.0.0.1", "identity": "../../etc/passwd"},
        "identity",
    ),
    (
        "POST",
        "/api/remote/sessions",
        {"target": "me@127.0.0.1", "identity": "/etc/passwd"},
        "identity",
    ),
    ("DELETE", f"/api/remote/sessions/{DOT}", None, "session_id"),
    ("GET", f"/api/remote/sessions/{DOT}/files?path=x", None, "session_id"),
]


@pytest.mark.parametrize(
    ("method", "url", "body", "param"), CASES, ids=[f"{c[0]} {c[1]} {c[3]}" for c in CASES]
)
def test_traversal_attempt_answers_400_naming_the_field(live, method, url, body, param, tmp_path):
    # The server reads WORKBENCH_HOME per request; conftest gives each test its own home.
    home = Path(os.environ["WORKBENCH_HOME"])
    for sub in ("exports", "imports"):
        (home / sub).mkdir(parents=True, exist_ok=True)
        (home / sub / "escape").symlink_to(tmp_path)
    r = live.request(method, url, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param
    assert param in err["message"]


def test_safe_export_path_inside_root_works(live):
    r = live.post(
        "/api/export/files", json={"format": "csv", "path": "sub/out.csv", "project": "p"}
    )
    assert r.status_code == 200 and r.json()["path"].endswith("exports/sub/out.csv")


def test_artifact_upload_with_zip_slip_member_answers_400(live, tmp_path):
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("../../evil.txt", "x")
    r = live.post(
        "/api/artifacts/up/versions",
        params={"project": "p", "type": "dataset"},
        content=buf.getvalue(),
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"
    assert not (tmp_path.parent / "evil.txt").exists()
    r = live.post(
        f"/api/artifacts/{DOT}/versions",
        params={"project": "p", "type": "dataset"},
        content=buf.getvalue(),
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "name"
    r = live.post(f"/api/artifacts/ds/{DOT}/use", params={"project": "p", "run_id": "r"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "selector"
