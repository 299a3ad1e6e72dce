"""Shared by the tests: sections of lines printed at the end of the run (the browser
test's time per notebook, the student copies' time under nbval)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

_SECTIONS: dict[str, list[str]] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print each section that has lines (pytest calls this at the end of the run)."""
    for title, lines in _SECTIONS.items():
        if lines:
            terminalreporter.section(title)
            for line in lines:
                terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def summary() -> Callable[[str], list[str]]:
    """``summary(title)``: the list of lines printed under ``title`` at the end."""
    return lambda title: _SECTIONS.setdefault(title, [])
