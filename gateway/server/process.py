"""What `orchestra serve` does to its own process once the gateway has started.

These change state that belongs to the whole process (the collector, the interpreter's switch
interval, signal handlers), so the application never applies them by itself: an app created in
a test, or served by another ASGI server, leaves its process as it found it. `orchestra serve`
owns its process and opts in through :func:`gateway.server.app.create_served_app`; everything
is put back when the lifespan ends.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from gateway.http.shutdown import Drain

#: How long a thread may keep the GIL while the event loop waits for it.
LOOP_SWITCH_INTERVAL_S = 0.0005

_DRAIN_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def served_process(drain: Drain) -> Iterator[None]:
    """Tune the process for serving and start ``drain`` on SIGTERM/SIGINT, until exit."""
    restore_signals = _chain_drain_on_signals(drain, asyncio.get_running_loop())
    # What exists now lives as long as the process: out of the collector's sight, a full
    # collection walks only what requests allocate (a gen-2 pass over the whole heap is
    # what stalls a Python server's event loop).
    gc.freeze()
    # The record writer and the log writer run in threads: when the loop wakes from epoll
    # while one of them holds the GIL, it waits up to the switch interval (5 ms by default)
    # before it may answer anything.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(LOOP_SWITCH_INTERVAL_S)
    try:
        yield
    finally:
        sys.setswitchinterval(switch_interval)
        gc.unfreeze()
        restore_signals()


def _chain_drain_on_signals(drain: Drain, loop: asyncio.AbstractEventLoop) -> Any:
    """Chain onto the server's SIGTERM/SIGINT handlers (uvicorn installs them first)."""
    previous_handlers: dict[int, Any] = {}
    for signum in _DRAIN_SIGNALS:
        previous = signal.getsignal(signum)

        def handler(number: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(drain.begin)
            if callable(previous):
                previous(number, frame)

        try:
            signal.signal(signum, handler)
        except ValueError:  # not the main thread: the server handles signals elsewhere
            break
        previous_handlers[signum] = previous

    def restore() -> None:
        for signum, previous in previous_handlers.items():
            signal.signal(signum, previous)

    return restore
