"""The Kustomize base and its example overlay render, and keep the deployment's invariants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.server.protocols import graceful_shutdown_s
from gateway.settings import Settings
from tests.deploy.manifests import (
    KUSTOMIZATIONS,
    PREFIX,
    SOURCE_VARIABLES,
    kustomize,
    secret_fields,
    setting_name,
    settings_from,
)

Docs = list[dict[str, Any]]


@pytest.fixture(scope="module", params=list(KUSTOMIZATIONS), ids=list(KUSTOMIZATIONS))
def rendered(request: pytest.FixtureRequest) -> Docs:
    directory: Path = KUSTOMIZATIONS[request.param]
    return kustomize(directory)


def one(docs: Docs, kind: str, component: str | None = None) -> dict[str, Any]:
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and (
            component is None
            or d["metadata"]["labels"].get("app.kubernetes.io/component") == component
        )
    ]
    assert len(found) == 1, f"{len(found)} {kind} ({component})"
    return found[0]


def settings_data(docs: Docs) -> dict[str, str]:
    return dict(one(docs, "ConfigMap")["data"])


def gateway_container(docs: Docs) -> dict[str, Any]:
    (container,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(container)


def pod_specs(docs: Docs) -> list[dict[str, Any]]:
    return [one(docs, kind)["spec"]["template"]["spec"] for kind in ("Deployment", "Job")]


def test_every_kind_the_issue_asks_for_is_rendered(rendered: Docs) -> None:
    kinds = sorted(d["kind"] for d in rendered)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Job",
            "PodDisruptionBudget",
            "Service",
            "ServiceMonitor",
        ]
    )


def test_at_least_two_replicas_always(rendered: Docs) -> None:
    deployment = one(rendered, "Deployment")
    assert deployment["spec"]["replicas"] >= 2
    hpa = one(rendered, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    # A rollout never removes a ready replica before its successor is ready.
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_selectors_find_the_gateway_pods(rendered: Docs) -> None:
    pod_labels = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget", "ServiceMonitor"):
        spec = one(rendered, kind)["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= pod_labels.items(), kind
    pdb = one(rendered, "PodDisruptionBudget")["spec"]
    # A voluntary eviction may take one replica, never all of them.
    assert pdb.get("maxUnavailable") == 1 or pdb.get("minAvailable", 0) >= 1


def test_probes_ask_status_on_the_served_port(rendered: Docs) -> None:
    container = gateway_container(rendered)
    (port,) = container["ports"]
    assert container["args"][container["args"].index("--port") + 1] == str(port["containerPort"])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/status", probe
        assert check["port"] in (port["name"], port["containerPort"]), probe
    # Liveness gives a dependency outage time: a restart does not bring PostgreSQL back.
    liveness = container["livenessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 60


def test_the_grace_period_covers_the_pre_stop_pause_and_the_drain(rendered: Docs) -> None:
    spec = one(rendered, "Deployment")["spec"]["template"]["spec"]
    command = gateway_container(rendered)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    pause = float(command[1])
    settings = settings_from(settings_data(rendered))
    # The pause lets the endpoints go before SIGTERM; then the drain and uvicorn's own wait.
    assert 0 < pause < settings.shutdown_drain_s
    needed = pause + graceful_shutdown_s(settings)
    assert spec["terminationGracePeriodSeconds"] > needed


def test_pods_run_as_a_non_root_user_without_privileges(rendered: Docs) -> None:
    for spec in pod_specs(rendered):
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] > 0 and context["runAsGroup"] > 0
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False
            assert own["readOnlyRootFilesystem"] is True
            assert own["capabilities"]["drop"] == ["ALL"]
            limits = container["resources"]["limits"]
            assert container["resources"]["requests"] and limits["memory"], container["name"]


def test_secrets_are_referenced_never_written(rendered: Docs) -> None:
    assert not [d for d in rendered if d["kind"] == "Secret"], "a Secret with values in the repo"
    data = settings_data(rendered)
    secret_vars = {PREFIX + name.upper() for name in secret_fields()} - {"ORCHESTRA_REDIS_URL"}
    assert not secret_vars & data.keys()
    redis = data.get("ORCHESTRA_REDIS_URL", "")
    assert "@" not in redis, "a Redis password belongs in the Secret (orchestra_redis_url)"
    for spec in pod_specs(rendered):
        for container in spec["containers"]:
            for env in container.get("env", []):
                assert not (env["name"] in secret_vars and "value" in env), env["name"]
        (volume,) = [v for v in spec["volumes"] if "secret" in v]
        (mount,) = [
            m for c in spec["containers"] for m in c["volumeMounts"] if m["name"] == volume["name"]
        ]
        # The gateway reads the Secret's files where ORCHESTRA_SECRETS_DIR says.
        assert mount["mountPath"] == data["ORCHESTRA_SECRETS_DIR"] and mount["readOnly"]
        assert volume["secret"]["secretName"] == "orchestra"
    credentials = one(rendered, "ServiceMonitor")["spec"]["endpoints"][0]["authorization"]
    assert credentials["credentials"] == {"name": "orchestra", "key": "orchestra_metrics_token"}


def test_every_variable_is_a_setting_the_gateway_knows(rendered: Docs) -> None:
    data = settings_data(rendered)
    variables = set(data)
    for spec in pod_specs(rendered):
        for container in spec["containers"]:
            variables |= {env["name"] for env in container.get("env", [])}
            refs = [e["configMapRef"]["name"] for e in container["envFrom"]]
            assert refs == [one(rendered, "ConfigMap")["metadata"]["name"]]
    assert variables and all(v.startswith(PREFIX) for v in variables), variables
    unknown = {
        v for v in variables - SOURCE_VARIABLES if setting_name(v) not in Settings.model_fields
    }
    assert not unknown, f"not in gateway/settings.py: {sorted(unknown)}"
    settings_from(data)  # and each value is one the setting accepts
