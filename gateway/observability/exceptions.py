"""An exception as it may be logged: its text, and its causes', without secrets.

Loguru's patcher sees a record's message and bound values, but an exception's text
(``str(exc)``: e.g. a library error quoting a URL with a key, or a DSN with a password) is added
by each sink's formatter after it. The stderr sink scrubs its finished lines again; a log file
does not go through that writer. So the patcher swaps such an exception for a stand-in: the
same class name and module (the traceback reads the same), the same frames and chain, its text
redacted. Only when some text of the chain changes: most exceptions are logged as they are.
"""

from __future__ import annotations

from collections.abc import Callable

Redact = Callable[[str], str]


def _texts(exc: BaseException) -> list[str]:
    return [str(exc), *(str(note) for note in getattr(exc, "__notes__", ()))]


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and not any(current is s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def scrubbed(exc: BaseException, redact: Redact) -> BaseException | None:
    """A stand-in for ``exc`` with its chain's texts redacted; None when nothing needs it."""
    if all(redact(text) == text for link in _chain(exc) for text in _texts(link)):
        return None
    return _stand_in(exc, redact, {})


def _stand_in(exc: BaseException, redact: Redact, made: dict[int, BaseException]) -> BaseException:
    if id(exc) in made:
        return made[id(exc)]
    cls = type(exc)
    twin_class = type(
        cls.__name__, (Exception,), {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
    )
    twin: BaseException = twin_class(redact(str(exc)))
    made[id(exc)] = twin
    twin.__traceback__ = exc.__traceback__
    notes = getattr(exc, "__notes__", None)
    if notes:
        twin.__notes__ = [redact(str(note)) for note in notes]
    if exc.__cause__ is not None:
        twin.__cause__ = _stand_in(exc.__cause__, redact, made)
    if exc.__context__ is not None:
        twin.__context__ = _stand_in(exc.__context__, redact, made)
    twin.__suppress_context__ = exc.__suppress_context__
    return twin
