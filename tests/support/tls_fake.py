"""The OpenAI fake served over HTTPS with a test CA (trustme), as a child process.

``TLSFake.running(directory)`` writes a throw-away CA (``ca_path``, PEM) and a certificate for
``localhost`` and ``127.0.0.1``, and starts ``orchestra fake-openai --tls-cert --tls-key`` on a
free port. The gateway trusts it through ``upstream_ca_bundle``; both names reach the same
server, so a test can send one app through a proxy and another one directly (NO_PROXY).
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import trustme

from tests.gateway.http.conftest import START_TIMEOUT_S, Server, child_env, free_port, spawn


@dataclass
class TLSFake:
    server: Server
    port: int
    ca_path: Path
    context: ssl.SSLContext

    def base_url(self, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}/v1"

    def requests(self) -> list[dict[str, object]]:
        """What the fake received (``GET /_fake/requests``), oldest first."""
        with httpx.Client(verify=self.context, timeout=5) as client:
            response = client.get(f"https://127.0.0.1:{self.port}/_fake/requests")
        response.raise_for_status()
        records: list[dict[str, object]] = response.json()
        return records

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(verify=self.context, timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.server.process.poll() is not None:
                    raise RuntimeError(f"the TLS fake exited: {self.server.stderr()}")
                try:
                    url = f"https://127.0.0.1:{self.port}/_fake/health"
                    if client.get(url).status_code == 200:
                        return
                except httpx.TransportError:
                    time.sleep(0.05)
        raise RuntimeError(f"the TLS fake did not start: {self.server.stderr()}")

    @classmethod
    @contextmanager
    def running(cls, directory: Path, *, tokens: int = 8) -> Iterator[TLSFake]:
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        issued = ca.issue_cert("localhost", "127.0.0.1")
        ca_path, cert_path, key_path = (directory / n for n in ("ca.pem", "cert.pem", "key.pem"))
        ca.cert_pem.write_to_path(str(ca_path))
        issued.cert_chain_pems[0].write_to_path(str(cert_path))
        issued.private_key_pem.write_to_path(str(key_path))
        context = ssl.create_default_context(cafile=str(ca_path))
        port = free_port()
        args = ["fake-openai", "--tokens", str(tokens)]
        args += ["--tls-cert", str(cert_path), "--tls-key", str(key_path)]
        server = spawn(f"tls-fake-{port}", args, child_env({}), directory, port)
        fake = cls(server, port, ca_path, context)
        try:
            fake._wait_ready()
            yield fake
        finally:
            server.stop()
