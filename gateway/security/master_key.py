"""Where the master key comes from: the setting, or the 0600 file in ORCHESTRA_HOME."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import SecretStr

from gateway.core.errors import MasterKeyError
from gateway.security.keyring import generate_master_key, parse_master_keys


def resolve_master_keys(configured: SecretStr | None, key_file: Path) -> list[str]:
    """The master keys in force, newest first; a clear error when none can be found."""
    if configured is not None:
        return parse_master_keys(configured.get_secret_value())
    try:
        text = key_file.read_text()
    except FileNotFoundError:
        raise MasterKeyError(
            f"No master key: ORCHESTRA_MASTER_KEY is unset and {key_file} does not exist. "
            "Run `orchestra init` to create one."
        ) from None
    except OSError as exc:
        raise MasterKeyError(
            f"Cannot read the master key file {key_file}: {exc.strerror}."
        ) from None
    return parse_master_keys(text)


def write_master_key_file(key_file: Path, keys: list[str]) -> None:
    """Atomically replace the key file (0600): a crash leaves the old or the new file, whole."""
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".master.key.", dir=key_file.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(",".join(keys) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp_name).replace(key_file)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def create_master_key_file(key_file: Path) -> bool:
    """Create the key file if it is missing; True when a new key was written."""
    if key_file.exists():
        return False
    write_master_key_file(key_file, [generate_master_key()])
    return True
