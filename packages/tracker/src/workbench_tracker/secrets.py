"""Secret storage for SSH passwords and key passphrases.

Secrets are never written in plain text. The OS keyring is used when ``keyring`` has a working
backend (a "fail" or "null" backend does not count); otherwise secrets are encrypted at rest with
Fernet (AES-128-CBC + HMAC) in ``WORKBENCH_HOME/secrets/secrets.json``, with the key in
``WORKBENCH_HOME/secrets/secret.key`` created with mode 0600. Encryption-at-rest with a local key
file protects against secrets leaking through backups, logs and screenshots of config files; it is
the same trade-off git credential stores and docker make when no keyring exists.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Protocol

from workbench_tracker.paths import workbench_home

__all__ = ["FernetSecretStore", "KeyringSecretStore", "SecretStore", "get_secret_store"]

SERVICE = "workbench-tracker"
_LOCK = threading.Lock()


class SecretStore(Protocol):
    """Where a secret lives; keys are free-form strings such as ``ssh:user@host``."""

    backend: str

    def set(self, key: str, value: str) -> None: ...

    def get(self, key: str) -> str | None: ...

    def delete(self, key: str) -> None: ...


class KeyringSecretStore:
    """The OS keyring (Secret Service, macOS Keychain, Windows Credential Locker)."""

    backend = "keyring"

    def set(self, key: str, value: str) -> None:
        import keyring

        keyring.set_password(SERVICE, key, value)

    def get(self, key: str) -> str | None:
        import keyring

        value: str | None = keyring.get_password(SERVICE, key)
        return value

    def delete(self, key: str) -> None:
        import keyring
        import keyring.errors

        try:
            keyring.delete_password(SERVICE, key)
        except keyring.errors.PasswordDeleteError:
            pass


class FernetSecretStore:
    """Secrets encrypted with Fernet in a JSON file; the key file is mode 0600."""

    backend = "fernet"

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else workbench_home() / "secrets"
        self.key_path = self.root / "secret.key"
        self.data_path = self.root / "secrets.json"

    def _fernet(self):  # type: ignore[no-untyped-def]
        from cryptography.fernet import Fernet

        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.key_path.exists():
            key = Fernet.generate_key()
            # O_EXCL + mode: the key is never readable by others, not even for an instant.
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(key)
        else:
            os.chmod(self.key_path, 0o600)
        return Fernet(self.key_path.read_bytes().strip())

    def _load(self) -> dict[str, str]:
        if not self.data_path.exists():
            return {}
        data = json.loads(self.data_path.read_text())
        return {str(k): str(v) for k, v in data.items()}

    def _save(self, data: dict[str, str]) -> None:
        tmp = self.data_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.data_path)

    def set(self, key: str, value: str) -> None:
        with _LOCK:
            f = self._fernet()
            data = self._load()
            data[key] = f.encrypt(value.encode()).decode()
            self._save(data)

    def get(self, key: str) -> str | None:
        with _LOCK:
            data = self._load()
            if key not in data:
                return None
            value: str = self._fernet().decrypt(data[key].encode()).decode()
            return value

    def delete(self, key: str) -> None:
        with _LOCK:
            data = self._load()
            if data.pop(key, None) is not None:
                self._save(data)


def _keyring_works() -> bool:
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return False
    backend = keyring.get_keyring()
    if isinstance(backend, fail.Keyring):
        return False
    name = type(backend).__module__ + "." + type(backend).__name__
    if "null" in name.lower() or "fail" in name.lower():
        return False
    return float(getattr(backend, "priority", 0) or 0) > 0


def get_secret_store(prefer_keyring: bool = True) -> SecretStore:
    """Return the keyring store when it works, else the encrypted file store.

    Setting ``WORKBENCH_SECRETS_BACKEND=fernet`` forces the file store (useful on headless
    machines whose keyring would prompt).
    """
    forced = os.environ.get("WORKBENCH_SECRETS_BACKEND", "").lower()
    if forced == "fernet":
        return FernetSecretStore()
    if prefer_keyring and forced != "fernet" and _keyring_works():
        return KeyringSecretStore()
    return FernetSecretStore()
