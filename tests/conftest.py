"""Shared by the tests: the two long files first, and lines printed at the end of the
run under a title (the browser test's time per notebook, the student copies' time
under nbval); the lines travel in each test's report, so they reach the end-of-run
summary from pytest-xdist's workers too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

_KEY = "lwt-summary"
# The two long files, which make test's two workers start on (-n 2 --dist loadfile
# --no-loadscope-reorder hands out files in this order: one each, then the rest).
LONG_FIRST = ("test_browser.py", "test_student.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser test, then the student copies' test file, then the rest."""

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_FIRST.index(name) if name in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order


_SECTIONS: dict[str, list[str]] = {}


@pytest.fixture(autouse=True)
def _resume_dir(tmp_path_factory, monkeypatch):
    """Resumable recipes keep their state under ``$LWT_RESUME_DIR``: a fresh folder per
    test, so no test resumes another's run or writes to the home folder."""
    monkeypatch.setenv("LWT_RESUME_DIR", str(tmp_path_factory.mktemp("resume")))


@pytest.fixture(scope="module")
def lenet_int8_files(tmp_path_factory):
    """A random LeNet-5 quantized by ``deploy.quantize_onnx`` with 7- and 8-bit
    weights, and its calibration inputs (tests/test_saturation.py, test_portability)."""
    import torch

    from lwt import deploy, models

    torch.manual_seed(0)
    model = models.create_model("lenet5").eval()
    calib = [torch.rand(32, 1, 28, 28) * 3 - 0.4 for _ in range(4)]
    d = tmp_path_factory.mktemp("lenet")
    fp32 = deploy.export_onnx(model, (1, 28, 28), d / "fp32.onnx")
    files = {
        b: deploy.quantize_onnx(fp32, d / f"w{b}.onnx", calib, weight_bits=b)
        for b in (7, 8)
    }
    return calib, files


@pytest.fixture
def summary(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """``summary(title, line)``: print ``line`` under ``title`` at the end."""
    return lambda title, line: request.node.user_properties.append(
        (_KEY, (title, line))
    )


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect the lines (every phase's report repeats them: read the call's)."""
    if report.when == "call":
        for key, value in report.user_properties:
            if key == _KEY:
                title, line = value
                _SECTIONS.setdefault(title, []).append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print each section (pytest calls this at the end of the run)."""
    for title, lines in _SECTIONS.items():
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(line)
