from __future__ import annotations

import pytest

from cli.errors import EXIT_CODES, exit_code_for
from gateway.core import errors
from gateway.core.errors import GatewayError, all_error_classes

CLASSES = all_error_classes()


def _name(cls: type[GatewayError]) -> str:
    return cls.__name__


def test_the_tree_is_found_whole() -> None:
    # Every class defined in the module is reachable from the root, and nothing else is.
    defined = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, GatewayError)
    }
    assert set(CLASSES) == defined
    assert len(CLASSES) == len(set(CLASSES))
    assert len(CLASSES) >= 20


#: Classes that deliberately share their parent's code and differ only by HTTP status.
#: Each entry is a decision to review: the default is one code per class.
STATUS_VARIANTS: set[str] = {"UnprocessableRequest"}  # 422 for schema errors, still invalid_request
#: Classes that share their parent's code and status and differ only in being retried.
RETRY_VARIANTS: set[str] = {"UpstreamRejected"}  # an upstream 4xx: upstream_error, not retried


def test_every_error_has_its_own_code() -> None:
    owners: dict[str, type[GatewayError]] = {}
    for cls in sorted(CLASSES, key=lambda c: len(c.__mro__)):  # parents first
        assert cls.code == cls.code.lower()
        assert cls.code.replace("_", "").isalpha()
        if cls.__name__ in STATUS_VARIANTS:
            parent = cls.__mro__[1]
            assert cls.code == getattr(parent, "code", None), cls
            assert cls.http_status != getattr(parent, "http_status", None), cls
            continue
        if cls.__name__ in RETRY_VARIANTS:
            parent = cls.__mro__[1]
            assert (cls.code, cls.http_status) == (
                getattr(parent, "code", None),
                parent.http_status,
            )
            assert cls.retryable != getattr(parent, "retryable", None), cls
            continue
        assert cls.code not in owners, f"{cls.__name__} reuses {owners[cls.code].__name__}'s code"
        owners[cls.code] = cls


def test_the_status_variants_still_exist() -> None:
    assert {cls.__name__ for cls in CLASSES} >= STATUS_VARIANTS | RETRY_VARIANTS


@pytest.mark.parametrize("cls", CLASSES, ids=_name)
def test_every_error_has_an_error_status(cls: type[GatewayError]) -> None:
    assert 400 <= cls.http_status <= 599
    assert isinstance(cls.retryable, bool)


@pytest.mark.parametrize("cls", CLASSES, ids=_name)
def test_every_error_maps_to_a_non_zero_exit_code(cls: type[GatewayError]) -> None:
    code = exit_code_for(cls("boom"))
    assert isinstance(code, int)
    assert 1 <= code <= 125  # 126+ mean "not executable", "not found" and signals to a shell


@pytest.mark.parametrize("cls", CLASSES, ids=_name)
def test_the_exit_code_comes_from_the_nearest_mapped_class(cls: type[GatewayError]) -> None:
    nearest = next(parent for parent in cls.__mro__ if parent in EXIT_CODES)
    assert exit_code_for(cls("boom")) == EXIT_CODES[nearest]


@pytest.mark.parametrize(
    ("error", "exit_code"),
    [
        (errors.InvalidRequest("x"), 2),
        (errors.RequestTooLarge("x"), 2),
        (errors.NotFound("x"), 3),
        (errors.Conflict("x"), 4),
        (errors.ConfigurationError("x"), 5),
        (errors.MasterKeyError("x"), 5),
        (errors.NotInitialised("x"), 5),
        (errors.StorageUnavailable("x"), 6),
        (errors.Unauthenticated("x"), 7),
        (errors.TokenExpired("x"), 7),
        (errors.AppDisabled("x"), 7),
        (errors.UpstreamTimeout("x"), 8),
        (errors.QuotaExceeded("x"), 9),
        (errors.GatewayError("x"), 1),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, GatewayError) else str(value),
)
def test_documented_exit_codes(error: GatewayError, exit_code: int) -> None:
    assert exit_code_for(error) == exit_code


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (errors.InvalidRequest, 400, "invalid_request"),
        (errors.Unauthenticated, 401, "invalid_token"),
        (errors.TokenExpired, 401, "token_expired"),
        (errors.IdentityProviderUnavailable, 503, "identity_provider_unavailable"),
        (errors.Forbidden, 403, "forbidden"),
        (errors.AppDisabled, 403, "app_disabled"),
        (errors.NotFound, 404, "not_found"),
        (errors.StreamExpired, 410, "stream_expired"),
        (errors.Cancelled, 499, "cancelled"),
        (errors.Conflict, 409, "conflict"),
        (errors.QuotaExceeded, 429, "quota_exceeded"),
        (errors.UpstreamError, 502, "upstream_error"),
        (errors.UpstreamTimeout, 504, "upstream_timeout"),
        (errors.UpstreamRateLimited, 429, "upstream_rate_limited"),
        (errors.UpstreamUnavailable, 503, "upstream_unavailable"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else str(value),
)
def test_the_style_guide_table(cls: type[GatewayError], status: int, code: str) -> None:
    assert (cls.http_status, cls.code) == (status, code)


def test_message_and_retry_after_are_kept() -> None:
    error = errors.QuotaExceeded("slow down", retry_after=2.5)
    assert str(error) == "slow down"
    assert error.message == "slow down"
    assert error.retry_after == 2.5
    assert errors.NotFound("x").retry_after is None
