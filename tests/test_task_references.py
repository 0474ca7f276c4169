"""No task is started and dropped: the event loop keeps only weak references to tasks.

Ruff's RUF006 catches ``asyncio.create_task(...)`` used as a statement, but not
``loop.create_task(...)`` on a loop it cannot see the type of: this check covers both.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_SPAWNERS = {"create_task", "ensure_future"}


def _dropped_tasks(path: Path, root: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr in _SPAWNERS
        ):
            found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


@pytest.mark.parametrize("package", ["gateway", "cli"])
def test_every_started_task_is_kept(package: str) -> None:
    dropped = [hit for path in (ROOT / package).rglob("*.py") for hit in _dropped_tasks(path)]
    assert dropped == [], f"tasks started without a reference: {dropped}"


def test_the_check_sees_a_dropped_task(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f(loop):\n    task = loop.create_task(work())\n    loop.create_task(work())\n"
    )
    assert _dropped_tasks(sample, tmp_path) == ["sample.py:3"]
