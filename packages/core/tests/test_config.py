"""config: the home directory, the models directory and the settings base class."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from workbench_core.config import WorkbenchSettings, models_dir, workbench_home, workbench_path


def test_home_comes_from_env_and_is_created_on_demand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "a" / "b"
    monkeypatch.setenv("WORKBENCH_HOME", str(home))
    assert workbench_home(create=False) == home
    assert not home.exists()
    assert workbench_home() == home and home.is_dir()


def test_home_defaults_to_dot_workbench_in_user_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert workbench_home() == tmp_path / ".workbench"
    assert (tmp_path / ".workbench").is_dir()


def test_home_expands_user_and_env_vars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("WB_BASE", "base")
    monkeypatch.setenv("WORKBENCH_HOME", "~/$WB_BASE/wb")
    assert workbench_home(create=False) == tmp_path / "base" / "wb"


def test_models_dir_prefers_its_own_env_var_else_lives_under_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WORKBENCH_MODELS_DIR", raising=False)
    assert models_dir() == tmp_path / "home" / "models"
    monkeypatch.setenv("WORKBENCH_MODELS_DIR", str(tmp_path / "shared"))
    assert models_dir() == tmp_path / "shared" and (tmp_path / "shared").is_dir()


def test_workbench_path_creates_subdirectories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    assert workbench_path("tracker", "runs") == tmp_path / "tracker" / "runs"
    assert (tmp_path / "tracker" / "runs").is_dir()


class _Settings(WorkbenchSettings):
    port: int = 8000
    name: str = "dev"


def test_settings_read_workbench_prefixed_env_and_ignore_other_packages_vars(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKBENCH_PORT", "9001")
    monkeypatch.setenv("WORKBENCH_SOMETHING_ELSE", "x")
    monkeypatch.setenv("PORT", "1")
    settings = _Settings()
    assert settings.port == 9001 and settings.name == "dev"


def test_settings_reject_bad_env_value_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_PORT", "not-a-number")
    with pytest.raises(ValidationError, match="port"):
        _Settings()
