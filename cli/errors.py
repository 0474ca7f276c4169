"""The one place where domain errors become a message on stderr and an exit code."""

from __future__ import annotations

from typing import NoReturn

import typer

from cli.output import print_error
from gateway.core import errors

#: Exit codes by error class; the most specific class found along the MRO wins.
EXIT_CODES: dict[type[errors.GatewayError], int] = {
    errors.GatewayError: 1,
    errors.InvalidRequest: 2,
    errors.NotFound: 3,
    errors.Conflict: 4,
    errors.ConfigurationError: 5,
    errors.StorageUnavailable: 6,
    errors.Unauthenticated: 7,
    errors.Forbidden: 7,
    errors.UpstreamError: 8,
    errors.QuotaExceeded: 9,
    errors.QuotaUnavailable: 9,
}


def exit_code_for(error: errors.GatewayError) -> int:
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def fail(error: errors.GatewayError) -> NoReturn:
    print_error(error.message)
    raise typer.Exit(code=exit_code_for(error)) from None
