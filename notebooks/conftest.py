"""Per-notebook time under nbval: each notebook's cells summed, against the quick-mode
budget (75 s on the course's 2-core machine), printed at the end of the test run (make
test runs the student copies so, one torch thread each, beside the browser pass)."""

from __future__ import annotations

from collections import defaultdict

QUICK_BUDGET_S = 75
_seconds: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report) -> None:  # noqa: ANN001 - pytest's TestReport
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _seconds[path] += report.duration  # setup, call and teardown phases


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001
    if not _seconds:
        return
    terminalreporter.section("notebook time (all cells)")
    for path, sec in sorted(_seconds.items()):
        flag = "" if sec <= QUICK_BUDGET_S else f"  over the {QUICK_BUDGET_S} s budget"
        terminalreporter.write_line(f"{path}: {sec:.0f} s{flag}")
