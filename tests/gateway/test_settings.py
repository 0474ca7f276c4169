from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from gateway.core.errors import ConfigurationError
from gateway.settings import Settings, load_settings


def _toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> Path:
    path = tmp_path / "orchestra.toml"
    path.write_text(text)
    monkeypatch.setenv("ORCHESTRA_CONFIG", str(path))
    return path


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.home == Path(".orchestra")
    assert settings.database_url is None
    assert settings.master_key is None
    assert settings.redis_url is None
    assert settings.admin_token is None
    assert settings.default_base_url == "https://api.openai.com/v1"
    assert settings.master_key_file == Path(".orchestra") / "master.key"
    expected = (tmp_path / ".orchestra" / "orchestra.db").resolve()
    assert settings.resolved_database_url == f"sqlite+aiosqlite:///{expected}"


def test_the_default_database_lives_in_orchestra_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ORCHESTRA_HOME", str(tmp_path / "h"))
    settings = load_settings()
    assert settings.home == tmp_path / "h"
    assert (
        settings.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path / 'h' / 'orchestra.db'}"
    )
    assert settings.master_key_file == tmp_path / "h" / "master.key"


def test_a_postgres_url_is_kept_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "postgresql+asyncpg://orchestra:pw@db.internal:5432/orchestra"
    monkeypatch.setenv("ORCHESTRA_DATABASE_URL", url)
    monkeypatch.setenv("ORCHESTRA_DATABASE_SCHEMA", "tenant_a")
    settings = load_settings()
    assert settings.resolved_database_url == url
    assert settings.database_schema == "tenant_a"


def test_environment_variables_use_the_orchestra_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRA_REDIS_URL", "redis://localhost:6379/0")
    monkeypatch.setenv("ORCHESTRA_DEFAULT_MODEL", "gpt-4.1")
    monkeypatch.setenv("ORCHESTRA_CONNECT_TIMEOUT_S", "2.5")
    monkeypatch.setenv("REDIS_URL", "redis://unprefixed")
    monkeypatch.setenv("DEFAULT_MODEL", "unprefixed")
    settings = load_settings()
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.default_model == "gpt-4.1"
    assert settings.connect_timeout_s == 2.5


def test_secrets_are_secret_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRA_MASTER_KEY", "k1-not-shown,k2-not-shown")
    monkeypatch.setenv("ORCHESTRA_ADMIN_TOKEN", "admin-not-shown")
    settings = load_settings()
    assert isinstance(settings.master_key, SecretStr)
    assert isinstance(settings.admin_token, SecretStr)
    assert settings.master_key.get_secret_value() == "k1-not-shown,k2-not-shown"
    assert settings.admin_token.get_secret_value() == "admin-not-shown"
    for rendering in (repr(settings), str(settings), settings.model_dump_json()):
        assert "not-shown" not in rendering


def test_the_toml_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _toml(
        tmp_path,
        monkeypatch,
        'home = "/srv/orchestra"\nredis_url = "redis://toml"\nmax_messages = 10\n',
    )
    settings = load_settings()
    assert settings.home == Path("/srv/orchestra")
    assert settings.redis_url == "redis://toml"
    assert settings.max_messages == 10
    assert settings.resolved_database_url == "sqlite+aiosqlite:////srv/orchestra/orchestra.db"


def test_priority_is_init_then_env_then_toml_then_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _toml(
        tmp_path,
        monkeypatch,
        'redis_url = "redis://toml"\ndefault_model = "toml-model"\nlog_level = "DEBUG"\n',
    )
    monkeypatch.setenv("ORCHESTRA_REDIS_URL", "redis://env")
    monkeypatch.setenv("ORCHESTRA_DEFAULT_MODEL", "env-model")
    settings = load_settings(redis_url="redis://init")
    assert settings.redis_url == "redis://init"  # init beats env and TOML
    assert settings.default_model == "env-model"  # env beats TOML
    assert settings.log_level == "DEBUG"  # TOML beats the default
    assert settings.log_format == "human"  # the default


def test_none_overrides_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRA_REDIS_URL", "redis://env")
    assert load_settings(redis_url=None).redis_url == "redis://env"


def test_a_misspelt_toml_key_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _toml(tmp_path, monkeypatch, 'databse_url = "sqlite+aiosqlite:///x.db"\n')
    with pytest.raises(ConfigurationError, match="databse_url: Extra inputs are not permitted"):
        load_settings()


def test_a_toml_syntax_error_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _toml(tmp_path, monkeypatch, "home = \n")
    with pytest.raises(ConfigurationError, match="Invalid configuration file"):
        load_settings()


def test_a_wrongly_typed_toml_value_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _toml(tmp_path, monkeypatch, 'max_messages = "many"\n')
    with pytest.raises(ConfigurationError, match="max_messages"):
        load_settings()


def test_a_missing_config_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere.toml"
    monkeypatch.setenv("ORCHESTRA_CONFIG", str(missing))
    with pytest.raises(ConfigurationError, match=r"ORCHESTRA_CONFIG names .*nowhere\.toml"):
        load_settings()


def test_a_directory_is_not_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRA_CONFIG", str(tmp_path))
    with pytest.raises(ConfigurationError, match="not a file"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ORCHESTRA_CONNECT_TIMEOUT_S", "soon"),
        ("ORCHESTRA_CONNECT_TIMEOUT_S", "0"),
        ("ORCHESTRA_DEFAULT_MAX_OUTPUT_TOKENS", "-5"),
        ("ORCHESTRA_LOG_LEVEL", "LOUD"),
        ("ORCHESTRA_STREAM_DETACH_GRACE_S", "-1"),
        ("ORCHESTRA_STREAM_RETENTION_S", "0"),
        ("ORCHESTRA_STREAM_BUFFER_MAX_BYTES", "10"),
    ],
)
def test_invalid_environment_values_are_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    setting = name.removeprefix("ORCHESTRA_").lower()
    with pytest.raises(ConfigurationError, match=f"Invalid configuration: {setting}"):
        load_settings()


def test_a_bad_secret_value_is_not_echoed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _toml(tmp_path, monkeypatch, "master_key = 12345678901234567890\n")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "master_key" in caught.value.message
    assert "12345678901234567890" not in caught.value.message


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.redis_url = "redis://changed"  # type: ignore[misc]


def test_unknown_init_keywords_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="redis_ur"):
        load_settings(redis_ur="redis://typo")


def test_the_example_config_lists_every_setting_and_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    example = Path(__file__).parents[2] / "config" / "orchestra.example.toml"
    if not example.is_file():
        pytest.skip("config/orchestra.example.toml is not written yet")
    monkeypatch.setenv("ORCHESTRA_CONFIG", str(example))
    load_settings()
    text = example.read_text()
    for name in Settings.model_fields:
        assert name in text, f"{name} is missing from {example.name}"


def test_resumable_answers_have_the_documented_defaults_and_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings()
    assert settings.stream_detach_grace_s == 30
    assert settings.stream_retention_s == 300
    assert settings.stream_buffer_max_bytes <= settings.stream_memory_max_bytes
    monkeypatch.setenv("ORCHESTRA_STREAM_BUFFER_MAX_BYTES", "4096")
    monkeypatch.setenv("ORCHESTRA_STREAM_MEMORY_MAX_BYTES", "2048")
    with pytest.raises(ConfigurationError, match="stream_buffer_max_bytes must not exceed"):
        load_settings()
