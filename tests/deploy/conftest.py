"""The Compose topology without containers: three `orchestra serve` behind nginx.

nginx runs the SAME file as Compose (config/nginx/orchestra.conf.template, rendered the way
the nginx image renders it), with the three local replicas as upstreams. The replicas share a
throw-away PostgreSQL schema and Redis database 12, as in tests/gateway/replicas, whose process
and cluster helpers this reuses (run it under the Redis flock, as those tests). Like the
containers, they read their credentials from files (ORCHESTRA_SECRETS_DIR).

The three replicas start together on a fresh schema, as Compose starts them after the
migration service.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.security.keyring import generate_master_key
from tests.deploy.manifests import render_nginx, tool
from tests.gateway.replicas.conftest import (
    ADMIN_TOKEN,
    POSTGRES_URL,
    REDIS_URL,
    Cluster,
    Proc,
    RedisServer,
    child_env,
    free_port,
    run_cli,
    spawn,
    wait_http,
)
from tests.support.databases import scratch_stores
from tests.support.processes import spawn_orchestra

REPLICAS = 3
#: One access-log line per request: the gateway's id and the replica that answered it (each
#: variable lists every replica tried, ", " between them, when nginx had to try another).
ACCESS_FORMAT = "$upstream_http_x_request_id|$upstream_addr|$status"


@dataclass
class Topology:
    cluster: Cluster
    proxy: Proc
    access_log: Path

    @property
    def url(self) -> str:
        return self.proxy.url

    def served_by(self) -> dict[str, str]:
        """Request id -> the address of the replica that answered, from nginx's access log."""
        served: dict[str, str] = {}
        for line in self.access_log.read_text().splitlines():
            ids, upstreams, _status = line.split("|")
            request_id, upstream = ids.split(", ")[-1], upstreams.split(", ")[-1]
            if request_id != "-":
                assert request_id not in served, f"{request_id} logged twice"
                served[request_id] = upstream
        return served

    def replica_addresses(self) -> set[str]:
        return {f"127.0.0.1:{g.port}" for g in self.cluster.gateways}


def nginx_main_config(root: Path, proxy_port: int, upstreams: list[str]) -> Path:
    """A main nginx.conf around the rendered template (what the image's own nginx.conf does)."""
    site = root / "orchestra.conf"
    # Loopback only: the template's `listen` takes an address:port as well as a port.
    site.write_text(render_nginx(f"127.0.0.1:{proxy_port}", upstreams))
    temp = root / "temp"
    temp.mkdir()
    main = root / "nginx.conf"
    main.write_text(
        f"""daemon off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format orchestra '{ACCESS_FORMAT}';
    access_log {root}/access.log orchestra;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    include {site};
}}
"""
    )
    return main


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    nginx = tool("nginx")
    root = tmp_path_factory.mktemp("topology")
    master_key = generate_master_key()
    # The credentials as Compose hands them over: files, one per setting, not variables.
    secrets_dir = root / "secrets"
    secrets_dir.mkdir()
    for name, value in {
        "master_key": master_key,
        "database_url": POSTGRES_URL,
        "admin_token": ADMIN_TOKEN,
    }.items():
        (secrets_dir / f"orchestra_{name}").write_text(value + "\n")
    with scratch_stores(REDIS_URL) as schema:
        settings: dict[str, object] = {
            "secrets_dir": secrets_dir,
            "home": root / "home",
            "database_schema": schema,
            "redis_url": REDIS_URL,
            "log_flush_interval_s": 0.05,
            "log_format": "json",
            # A client that leaves is given up on after 1 s (not the default 30 s), so the test
            # below sees the replica stop the answer through the proxy.
            "stream_detach_grace_s": 1,
        }
        yield from _topology(nginx, root, settings, master_key)


def _topology(
    nginx: str, root: Path, settings: dict[str, object], master_key: str
) -> Iterator[Topology]:
    """The fake, the replicas and nginx in front, ready (stopped at the end)."""
    logs = root / "logs"
    procs: list[Proc] = []
    try:
        # The migration, once (Compose's `migrate` service: `orchestra db upgrade`).
        run_cli(["db", "upgrade"], child_env(settings))
        fake = spawn_orchestra("fake", ["fake-openai", "--tokens", "8"], child_env({}), logs)
        procs.append(fake)
        cluster = Cluster(
            fake,
            [],
            str(settings["database_schema"]),
            master_key,
            root,
            settings,
            own_redis=RedisServer(0, logs),  # never started: this topology has one Redis
        )
        cluster.gateways = [cluster.spawn_gateway(f"gateway-{i}") for i in range(REPLICAS)]
        procs += cluster.gateways
        proxy_port = free_port()
        upstreams = [f"127.0.0.1:{g.port}" for g in cluster.gateways]
        main = nginx_main_config(root, proxy_port, upstreams)
        proxy = spawn(
            "nginx", [nginx, "-p", str(root), "-c", str(main)], child_env({}), logs, proxy_port
        )
        procs.append(proxy)
        wait_http([fake], "/_fake/health")
        wait_http(cluster.gateways, "/status")
        wait_http([proxy], "/status")
        yield Topology(cluster, proxy, root / "access.log")
    finally:
        for proc in reversed(procs):
            proc.stop()
