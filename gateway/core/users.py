"""End users: the app's own pseudonymous id for one of its people (sessions, OIDC, records).

A user id is 1 to 128 *printable* characters, where printable means exactly Python's
``str.isprintable()``: no character of the Unicode categories "Other" (Cc controls such as
NUL, TAB, CR, LF, ESC and DEL; Cf formats such as the zero-width space and the bidi
overrides; Cs surrogates; Co private use; Cn unassigned) or "Separator" (Zs, Zl, Zp: the
no-break space, the line and paragraph separators), the ASCII space U+0020 alone excepted.
Length counts code points. Such an id can be shown in a log line, a table or a terminal
without breaking it or hiding part of itself, and is never more than 512 bytes of UTF-8.
"""

from __future__ import annotations

MAX_USER_CHARS = 128


def is_valid_user(value: object) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= MAX_USER_CHARS and value.isprintable()
