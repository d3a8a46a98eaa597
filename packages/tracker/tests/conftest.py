"""Shared fixtures: real SQLite files, a real PostgreSQL server, a real viewer under uvicorn."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tracker_testutil import CHROMIUM, CHROMIUM_ARGS, ServerThread, free_port


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own WORKBENCH_HOME, whatever the environment says."""
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WORKBENCH_TRACKER_URL", raising=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tracker.db'}"


def _pg_bin() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return os.path.dirname(found[-1]) if found else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; yields a base URL."""
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (pip install 'psycopg[binary]')")
    root = tempfile.mkdtemp(prefix="wb-pg-")
    data = os.path.join(root, "data")
    port = free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root: run the cluster as the postgres system user.
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        shutil.chown(root, "postgres", "postgres")
        os.chmod(root, 0o700)
        prefix = ["runuser", "-u", "postgres", "--"]
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    subprocess.run(
        [*prefix, f"{bindir}/initdb", "-D", data, "-U", "wb", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        env=env,
    )
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*prefix, f"{bindir}/pg_ctl", "-D", data, "-o", opts, "-l", f"{root}/log", "-w", "start"],
        check=True,
        capture_output=True,
        env=env,
    )
    try:
        yield f"postgresql+psycopg://wb@127.0.0.1:{port}"
    finally:
        subprocess.run(
            [*prefix, f"{bindir}/pg_ctl", "-D", data, "-m", "immediate", "stop"],
            capture_output=True,
            env=env,
        )
        shutil.rmtree(root, ignore_errors=True)


_db_counter = iter(range(1_000_000))


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh database on the session's PostgreSQL server."""
    import psycopg

    name = f"t{os.getpid()}_{next(_db_counter)}"
    dsn = postgres_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{postgres_server}/{name}"


@pytest.fixture(params=["sqlite", "postgres", "http"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The shared store suite runs against every implementation."""
    from workbench_tracker.store import get_store

    if request.param == "sqlite":
        st = get_store(f"sqlite:///{tmp_path / 's.db'}", cached=False)
        yield st
        st.close()
    elif request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        st = get_store(url, cached=False)
        yield st
        st.close()
    else:
        from workbench_tracker.viewer import create_app

        backend = get_store(f"sqlite:///{tmp_path / 'server.db'}", cached=False)
        with ServerThread(create_app(backend)) as server:
            st = get_store(server.url, cached=False)
            yield st
            st.close()
        backend.close()


@pytest.fixture
def viewer(tmp_path: Path) -> Iterator[tuple[ServerThread, Any]]:
    """A viewer under uvicorn over a SQLite store; yields (server, store)."""
    from workbench_tracker.store import get_store
    from workbench_tracker.viewer import create_app

    st = get_store(f"sqlite:///{tmp_path / 'viewer.db'}", cached=False)
    with ServerThread(create_app(st, poll_interval=0.2)) as server:
        yield server, st
    st.close()


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def page() -> Iterator[Any]:
    """A page in Debian's headless Chromium; any uncaught page error fails the test."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        yield pg
        browser.close()
        assert not errors, errors
