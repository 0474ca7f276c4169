"""Settings from secret files: ORCHESTRA_SECRETS_DIR (Compose and Kubernetes secrets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.errors import ConfigurationError
from gateway.security.keyring import generate_master_key
from gateway.settings import load_settings


@pytest.fixture
def secrets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "secrets"
    path.mkdir()
    monkeypatch.setenv("ORCHESTRA_SECRETS_DIR", str(path))
    return path


def test_each_file_holds_the_setting_of_its_name(secrets_dir: Path) -> None:
    key = generate_master_key()
    url = "postgresql+asyncpg://orchestra:s3cret@db:5432/orchestra"
    # As `docker compose` and a Kubernetes secret volume write them (a final newline, too).
    (secrets_dir / "orchestra_master_key").write_text(key + "\n")
    (secrets_dir / "orchestra_admin_token").write_text("adm_from_a_file")
    (secrets_dir / "orchestra_database_url").write_text(url)
    (secrets_dir / "postgres_password").write_text("s3cret")  # another service's: ignored
    settings = load_settings()
    assert settings.master_key is not None
    assert settings.master_key.get_secret_value() == key
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "adm_from_a_file"
    assert settings.database_url == url
    assert settings.metrics_token is None


def test_the_environment_wins_over_a_file_and_a_file_over_the_toml(
    secrets_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "orchestra.toml"
    toml.write_text('admin_token = "from-toml"\nmetrics_token = "from-toml"\n')
    monkeypatch.setenv("ORCHESTRA_CONFIG", str(toml))
    (secrets_dir / "orchestra_admin_token").write_text("from-file")
    (secrets_dir / "orchestra_metrics_token").write_text("from-file")
    monkeypatch.setenv("ORCHESTRA_ADMIN_TOKEN", "from-env")
    settings = load_settings()
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "from-env"
    assert settings.metrics_token is not None
    assert settings.metrics_token.get_secret_value() == "from-file"


def test_without_the_variable_no_directory_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "orchestra_admin_token").write_text("stray")
    assert load_settings().admin_token is None


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_secrets_dir_that_is_not_a_directory_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    path = tmp_path / "secrets"
    if kind == "a file":
        path.write_text("")
    monkeypatch.setenv("ORCHESTRA_SECRETS_DIR", str(path))
    with pytest.raises(ConfigurationError, match=r"ORCHESTRA_SECRETS_DIR names .*not a directory"):
        load_settings()


def test_a_bad_value_in_a_file_names_the_setting_not_the_value(secrets_dir: Path) -> None:
    (secrets_dir / "orchestra_shutdown_drain_s").write_text("s3cret-looking")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "shutdown_drain_s" in caught.value.message
    assert "s3cret-looking" not in caught.value.message
