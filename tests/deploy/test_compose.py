"""The Compose file, the image definition and the proxy's configuration keep their invariants."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.server.protocols import graceful_shutdown_s
from gateway.settings import Settings
from tests.deploy.manifests import (
    CONFIG,
    DOCKERFILE,
    NGINX_TEMPLATE,
    PREFIX,
    ROOT,
    SOURCE_VARIABLES,
    compose,
    nginx_directives,
    render_nginx,
    secret_fields,
    setting_name,
    settings_from,
    tool,
)

GATEWAY_IMAGE_SERVICES = ("gateway", "migrate")


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def duration_s(text: str) -> float:
    """A Compose or nginx duration (``40s``, ``1m30s``, ``3600s``, ``1h``) in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "": 1}
    parts = re.fullmatch(r"((\d+)h)?((\d+)m)?((\d+)s?)?", text)
    assert parts and text, text
    hours, minutes, seconds = (int(parts.group(i) or 0) for i in (2, 4, 6))
    return hours * units["h"] + minutes * units["m"] + seconds


def test_three_gateway_replicas_behind_the_proxy(services: dict[str, Any]) -> None:
    gateway = services["gateway"]
    assert gateway["deploy"]["replicas"] == 3
    assert "ports" not in gateway, "replicas are reached through the proxy only"
    proxy = services["proxy"]
    (mount,) = proxy["volumes"]
    source, target = mount.split(":")[:2]
    assert (CONFIG / source).resolve() == NGINX_TEMPLATE
    assert target.startswith("/etc/nginx/templates/") and target.endswith(".template")
    assert proxy["environment"]["PROXY_UPSTREAMS"] == "server gateway:8000;"
    assert proxy["environment"]["NGINX_ENVSUBST_FILTER"] == "^PROXY_"
    assert set(services) >= {"postgres", "redis", "prometheus", "grafana", "migrate"}


def test_the_schema_is_migrated_once_before_any_replica(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no" and "deploy" not in migrate
    depends = services["gateway"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_the_stop_grace_period_covers_the_drain(services: dict[str, Any]) -> None:
    gateway = services["gateway"]
    settings = settings_from(gateway["environment"])
    assert duration_s(gateway["stop_grace_period"]) > graceful_shutdown_s(settings)
    assert "/status" in " ".join(gateway["healthcheck"]["test"])


def test_secrets_are_files_never_environment_values(services: dict[str, Any]) -> None:
    declared = compose()["secrets"]
    for name, secret in declared.items():
        path = (CONFIG / secret["file"]).resolve()
        assert path.parent == CONFIG / "secrets", name
    ignored = (CONFIG / "secrets" / ".gitignore").read_text().splitlines()
    assert "*" in ignored, "config/secrets/ must be ignored by git"
    secret_vars = {PREFIX + name.upper() for name in secret_fields()} - {"ORCHESTRA_REDIS_URL"}
    for service_name, service in services.items():
        environment: dict[str, str] = service.get("environment", {})
        for name, value in environment.items():
            assert name not in secret_vars, (service_name, name)
            # Only *_FILE variables may name a credential (postgres, grafana read the file).
            if re.search(r"PASSWORD|TOKEN|SECRET|KEY", name) and name not in SOURCE_VARIABLES:
                assert name.endswith("_FILE") and value.startswith("/run/secrets/"), name
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", str(value)), (service_name, name)
        for secret in service.get("secrets", []):
            assert secret in declared, (service_name, secret)
    for name in GATEWAY_IMAGE_SERVICES:
        gateway = services[name]
        assert gateway["environment"]["ORCHESTRA_SECRETS_DIR"] == "/run/secrets"
        for secret in gateway["secrets"]:
            # Each file is the setting of its name (gateway/settings.py: ORCHESTRA_SECRETS_DIR).
            assert setting_name(secret.upper()) in Settings.model_fields, secret


def test_every_variable_is_a_setting_the_gateway_knows(services: dict[str, Any]) -> None:
    variables: dict[str, str] = {}
    for name in GATEWAY_IMAGE_SERVICES:
        variables.update(services[name]["environment"])
    variables.update(re.findall(r"\b(ORCHESTRA_\w+)=(\S+)", DOCKERFILE.read_text()))
    assert all(v.startswith(PREFIX) for v in variables), variables
    unknown = {
        v
        for v in variables.keys() - SOURCE_VARIABLES
        if setting_name(v) not in Settings.model_fields
    }
    assert not unknown, f"not in gateway/settings.py: {sorted(unknown)}"
    settings_from(variables)  # and each value is one the setting accepts


def test_the_image_runs_as_an_unprivileged_user() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM \S+ AS (\S+)$", text, re.MULTILINE)
    assert stages[-1] == "gateway", "the default target is the gateway without the UI"
    assert "gateway-ui" in stages
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and all(int(u.split(":")[0]) > 0 for u in users), users
    # Compose builds the target the file defines.
    build = compose()["services"]["gateway"]["build"]
    assert (
        build["target"] in stages
        and (CONFIG / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE
    )
    ignore = (CONFIG / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*")] == "*", "the context is an allow-list"
    assert not any(line.startswith("!config") for line in ignore), "config/secrets stays out"


def test_the_proxy_streams_events_as_they_come() -> None:
    text = render_nginx(8080, ["gateway:8000"])
    location = nginx_directives(text, "location /")
    assert location["proxy_buffering"] == ["off"]
    assert location["proxy_cache"] == ["off"]
    assert duration_s(location["proxy_read_timeout"][0]) >= 600
    # Keep-alive to the replicas needs HTTP/1.1 and no "Connection: close".
    assert location["proxy_http_version"] == ["1.1"]
    assert location["proxy_set_header"].count('Connection ""') == 1
    upstream = nginx_directives(text, "upstream orchestra_gateway")
    assert upstream["server"] == ["gateway:8000"]
    assert int(upstream["keepalive"][0]) > 0
    server = nginx_directives(text, "server")
    gzip_types = " ".join(server.get("gzip_types", [])).split()
    assert "text/event-stream" not in gzip_types and "*" not in gzip_types
    assert server["listen"] == ["8080"]
    assert "${" not in text


def test_nginx_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    nginx = tool("nginx")
    (tmp_path / "orchestra.conf").write_text(
        render_nginx(18080, ["127.0.0.1:18000", "127.0.0.1:18001"])
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{ access_log off; include {tmp_path}/orchestra.conf; }}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(main)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_prometheus_accepts_the_compose_scrape_config(tmp_path: Path) -> None:
    """promtool checks the config, its rules, and that the credentials file exists."""
    promtool = tool("promtool")
    token = tmp_path / "orchestra_metrics_token"
    token.write_text("not-a-real-token")
    config = (CONFIG / "compose" / "prometheus.yml").read_text()
    assert "/run/secrets/orchestra_metrics_token" in config
    (tmp_path / "prometheus.yml").write_text(
        config.replace("/run/secrets/orchestra_metrics_token", str(token))
    )
    (tmp_path / "alerts.yml").write_text((CONFIG / "prometheus" / "alerts.yml").read_text())
    result = subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0 and "SUCCESS" in result.stdout + result.stderr, result.stderr
