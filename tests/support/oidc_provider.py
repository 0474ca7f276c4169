"""A real, local OpenID provider for tests: discovery and JWKS over HTTP, keys made here.

``OidcProvider`` runs the standard library's HTTP server in a thread on 127.0.0.1 (a free
port) and serves ``/.well-known/openid-configuration`` and ``/jwks`` for keys it generates
(RSA 2048, EC P-256, Ed25519, with ``cryptography``). A test signs access tokens with those
keys, rotates them, counts the fetches, makes the provider misbehave (another issuer in its
discovery document, another ``jwks_uri``, an oversized key set, with or without a length)
and stops it to see what the gateway does when the provider goes away.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
AUDIENCE = "orchestra-test"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: PrivateKey

    @classmethod
    def generate(cls, alg: str, *, kid: str | None = None, rsa_bits: int = 2048) -> SigningKey:
        private_key: PrivateKey
        if alg == "RS256":
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        elif alg == "ES256":
            private_key = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            private_key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)
        return cls(
            kid=kid or f"{alg.lower()}-{secrets.token_hex(4)}", alg=alg, private_key=private_key
        )

    def public_jwk(self, **overrides: Any) -> dict[str, Any]:
        public = self.private_key.public_key()
        jwk: dict[str, Any]
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        jwk.update(overrides)
        return jwk

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], *, headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(
            claims,
            self.private_key,
            algorithm=self.alg,
            headers={"kid": self.kid, **(headers or {})},
        )


class OidcProvider:
    """Start with ``start()`` (or ``running()``), stop with ``stop()``; thread-safe counters."""

    def __init__(self, *, audience: str = AUDIENCE) -> None:
        self.audience = audience
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = []
        self._jwks_fetches = 0
        self._discovery_fetches = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.issuer = ""
        #: Misbehaviours a test can switch on.
        self.discovery_issuer: str | None = None  # another issuer in the discovery document
        self.jwks_uri: str | None = None  # another jwks_uri in the discovery document
        self.jwks_padding = 0  # bytes of filler added to the key set
        self.send_length = True  # False: a body delimited by closing the connection
        self.extra_jwks: list[dict[str, Any]] = []  # raw entries appended to the key set
        self.jwks_gate: threading.Event | None = None  # set: each JWKS answer waits for it

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> OidcProvider:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = provider._answer(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if provider.send_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        if self.jwks_gate is not None:
            self.jwks_gate.set()  # no handler thread stays blocked
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @classmethod
    @contextmanager
    def running(cls, **kwargs: Any) -> Iterator[OidcProvider]:
        provider = cls(**kwargs).start()
        try:
            yield provider
        finally:
            provider.stop()

    # --- what it serves ----------------------------------------------------------------------

    def _answer(self, path: str) -> bytes | None:
        if path == "/.well-known/openid-configuration":
            with self._lock:
                self._discovery_fetches += 1
            return orjson.dumps(
                {
                    "issuer": self.discovery_issuer or self.issuer,
                    "jwks_uri": self.jwks_uri or f"{self.issuer}/jwks",
                    "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
                }
            )
        if path == "/jwks":
            with self._lock:
                self._jwks_fetches += 1
            if self.jwks_gate is not None:
                self.jwks_gate.wait(timeout=10)
            with self._lock:
                keys = [key.public_jwk() for key in self._keys] + list(self.extra_jwks)
            document: dict[str, Any] = {"keys": keys}
            if self.jwks_padding:
                document["padding"] = "x" * self.jwks_padding
            return orjson.dumps(document)
        return None

    @property
    def jwks_fetches(self) -> int:
        with self._lock:
            return self._jwks_fetches

    @property
    def discovery_fetches(self) -> int:
        with self._lock:
            return self._discovery_fetches

    # --- keys and tokens ---------------------------------------------------------------------

    def add_key(self, alg: str = "RS256", **kwargs: Any) -> SigningKey:
        key = SigningKey.generate(alg, **kwargs)
        with self._lock:
            self._keys.append(key)
        return key

    def rotate(self, alg: str = "RS256") -> SigningKey:
        """Publish a new key in place of every current one (the old ones are withdrawn)."""
        key = SigningKey.generate(alg)
        with self._lock:
            self._keys = [key]
        return key

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "user-1",
            "iat": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(self, key: SigningKey, **overrides: Any) -> str:
        """An access token signed by ``key``; ``claim=None`` leaves that claim out."""
        return key.sign(self.claims(**overrides))
