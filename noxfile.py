"""Every way to lint, type-check, test, benchmark and run Workbench.

Plain ``nox`` runs everything except ``dev``, ``demo`` and ``bench``. Each package
session installs only workbench-core plus that package (and its test extras), so a
missing dependency in a package's metadata fails its own session.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

ROOT = Path(__file__).parent
CONSTRAINTS = ("-c", str(ROOT / "constraints.txt"))

nox.options.sessions = [
    "lint",
    "typecheck",
    "core",
    "client",
    "tracker",
    "serving",
    "agent",
    "devserver",
    "integration",
]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False

CORE = "./packages/core"
CLIENT = "./packages/client_sdk"
TRACKER = "./packages/tracker"
SERVING = "./packages/serving"
AGENT = "./packages/agent"
DEVSERVER = "./apps/devserver"
ALL = [CORE, CLIENT, TRACKER, SERVING, AGENT, DEVSERVER]

# Offline by construction: nothing in the suite may reach a model hub.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def _install(session: nox.Session, *targets: str) -> None:
    session.install(*CONSTRAINTS, *targets)


def _pytest(session: nox.Session, *paths: str) -> None:
    """Run pytest; exit code 5 (no tests collected) fails the session on purpose."""
    env = dict(OFFLINE_ENV)
    # Tiny models on a 2-core machine: one torch thread per process avoids oversubscription
    # (server thread + client in one process); forward passes get 10x faster, not slower.
    env["WORKBENCH_TORCH_THREADS"] = os.environ.get("WORKBENCH_TORCH_THREADS", "1")
    home = session.create_tmp()
    env.setdefault("WORKBENCH_HOME", str(Path(home) / "workbench-home"))
    # Share the tiny-model cache between sessions so presets are built once per CI run.
    env["WORKBENCH_MODELS_DIR"] = os.environ.get(
        "WORKBENCH_MODELS_DIR", str(ROOT / ".nox" / "_models")
    )
    session.run("pytest", *paths, *session.posargs, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    _install(session, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over every package, with all of them installed."""
    _install(session, "mypy", *ALL)
    session.run(
        "mypy",
        "packages/core/src",
        "packages/client_sdk/src",
        "packages/tracker/src",
        "packages/serving/src",
        "packages/agent/src",
        "apps/devserver/src",
    )


@nox.session
def core(session: nox.Session) -> None:
    """workbench-core alone."""
    _install(session, f"{CORE}[test]")
    _pytest(session, "packages/core/tests")


@nox.session
def client(session: nox.Session) -> None:
    """workbench-client plus core; its tests start a real serving server and log to a tracker."""
    _install(session, CORE, SERVING, TRACKER, f"{CLIENT}[test]")
    _pytest(session, "packages/client_sdk/tests")


@nox.session
def tracker(session: nox.Session) -> None:
    """workbench-tracker plus core."""
    _install(session, CORE, f"{TRACKER}[test]")
    _pytest(session, "packages/tracker/tests")


@nox.session
def serving(session: nox.Session) -> None:
    """workbench-serving plus core."""
    _install(session, CORE, f"{SERVING}[test]")
    _pytest(session, "packages/serving/tests")


@nox.session
def agent(session: nox.Session) -> None:
    """workbench-agent plus core (and the client and tracker it depends on)."""
    _install(session, CORE, CLIENT, TRACKER, SERVING, f"{AGENT}[test]")
    _pytest(session, "packages/agent/tests")


@nox.session
def devserver(session: nox.Session) -> None:
    """The combined dev server's own tests."""
    _install(session, *ALL[:-1], f"{DEVSERVER}[test]")
    _pytest(session, "apps/devserver/tests")


@nox.session
def integration(session: nox.Session) -> None:
    """Everything installed; cross-package tests against a real `workbench dev` subprocess."""
    _install(session, *[f"{p}[test]" for p in ALL])
    _pytest(session, "tests")


@nox.session
def dev(session: nox.Session) -> None:
    """Install everything and run the combined dev server (blocks until Ctrl-C)."""
    _install(session, *ALL)
    session.run("workbench", "dev", *session.posargs, env=OFFLINE_ENV)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the end-to-end demo against a dev server (starts one if none answers)."""
    _install(session, *ALL)
    session.run("workbench", "demo", *session.posargs, env=OFFLINE_ENV)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: each prints a ratio against an anchor measured in the same run."""
    _install(
        session,
        *ALL,
        "wandb",
        "mlflow",
        "tensorboardX",
    )
    scripts = sorted((ROOT / "benchmarks").glob("*.py"))
    wanted = set(session.posargs)
    for script in scripts:
        if wanted and script.stem not in wanted:
            continue
        session.run("python", str(script), env=OFFLINE_ENV)
