"""One worker of the benchmark's upstream: the project's fake OpenAI server on a shared port.

``python -m tests.bench.fake_server --port P [--tokens N]`` is ``orchestra fake-openai`` (same
app, same uvicorn settings: uvloop, httptools, no access log) except that the listening socket
is opened first, with ``SO_REUSEPORT``, so that several of these processes can share one port
and the kernel spreads connections over them. Per-request timing (``[token-ms:MS]``) comes from
directives in the prompt, so one fake serves every scenario.
"""

from __future__ import annotations

import argparse
import socket


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(4096)
    return sock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=50)
    args = parser.parse_args()
    sock = _listen(args.host, args.port)  # before the imports: the kernel queues connections

    import uvicorn

    from gateway.fakes.openai_server import FakeOpenAIConfig, create_app

    config = uvicorn.Config(
        create_app(FakeOpenAIConfig(tokens=args.tokens)),
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
        backlog=4096,
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
