"""The deployment files of ``config/``, loaded as data: Kustomize output, Compose, nginx.

Tools that may be missing (kubectl, nginx, promtool) skip a test on a developer's machine and
fail it in CI (``CI`` set), as the observability tests do for promtool.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from string import Template
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from gateway.settings import CONFIG_ENV, SECRETS_DIR_ENV, Settings

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
COMPOSE = CONFIG / "compose.yaml"
NGINX_TEMPLATE = CONFIG / "nginx" / "orchestra.conf.template"
DOCKERFILE = CONFIG / "Dockerfile"
KUSTOMIZATIONS = {
    "base": CONFIG / "k8s" / "base",
    "example overlay": CONFIG / "k8s" / "overlays" / "example",
}
PREFIX = "ORCHESTRA_"
#: Variables the settings module reads that are not fields: where the settings come from.
SOURCE_VARIABLES = {CONFIG_ENV, SECRETS_DIR_ENV}


def tool(name: str) -> str:
    # nginx lives in /usr/sbin, which a non-root PATH may lack.
    found = shutil.which(name, path=f"{os.environ.get('PATH', os.defpath)}:/usr/sbin:/sbin")
    if found is None:
        message = f"{name} is not installed"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must have it")
        pytest.skip(message)
    return found


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize``: the documents it renders (it must succeed, offline)."""
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def render_nginx(listen: int | str, upstreams: list[str]) -> str:
    """The template as the nginx image renders it: envsubst of the PROXY_* variables only."""
    servers = " ".join(f"server {address};" for address in upstreams)
    values = {"PROXY_LISTEN_PORT": str(listen), "PROXY_UPSTREAMS": servers}
    return Template(NGINX_TEMPLATE.read_text()).safe_substitute(values)


def secret_fields() -> set[str]:
    """Settings that hold credentials: SecretStr ones, and URLs that may carry a password."""
    secret = {
        name
        for name, field in Settings.model_fields.items()
        if field.annotation is not None and SecretStr in _types_of(field.annotation)
    }
    return secret | {"database_url", "redis_url"}


def _types_of(annotation: Any) -> set[Any]:
    args = getattr(annotation, "__args__", None)
    return set(args) if args else {annotation}


def setting_name(variable: str) -> str:
    return variable.removeprefix(PREFIX).lower()


def settings_from(variables: Mapping[str, str]) -> Settings:
    """The settings these ORCHESTRA_* values make (validated as the gateway would)."""
    values = {setting_name(k): v for k, v in variables.items() if k not in SOURCE_VARIABLES}
    return Settings.model_validate(values)


def nginx_directives(text: str, block: str) -> dict[str, list[str]]:
    """The directives directly inside the first ``block {`` (``server``, ``location /``)."""
    text = re.sub(r"#[^\n]*", "", text)
    opening = text.index(block + " {") + len(block) + 2
    depth = 1
    end = opening
    while depth:
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        end += 1
    body = text[opening : end - 1]
    while "{" in body:  # nested blocks (a server's locations) are not this block's own
        body = re.sub(r"[^;{}]*\{[^{}]*\}", ";", body)
    directives: dict[str, list[str]] = {}
    for statement in body.split(";"):
        words = statement.split()
        if words:
            directives.setdefault(words[0], []).append(" ".join(words[1:]))
    return directives
