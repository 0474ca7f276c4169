"""Reading a secret without it ever touching argv or shell history: stdin or a hidden prompt."""

from __future__ import annotations

import sys

import typer


def read_secret(prompt: str, *, from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    value: str = typer.prompt(prompt, hide_input=True)
    return value.strip()
