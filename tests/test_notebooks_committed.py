"""The committed notebooks are what learners read on the web: executed, clean."""

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MACHINE_PATH = re.compile(r"/(work|tmp|root|home|Users)/[\w.-]+/")


def code_cells(path):
    cells = json.loads(path.read_text())["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    return [c for c in code if "".join(c["source"]).strip()]


def test_there_are_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS][:2] == ["00", "01"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_in_order_without_errors(path):
    cells = code_cells(path)
    counts = [c["execution_count"] for c in cells]
    assert all(counts), "every code cell executed"
    assert counts == sorted(counts) and len(set(counts)) == len(counts), "top to bottom"
    assert not [o for c in cells for o in c["outputs"] if o["output_type"] == "error"]
    assert sum(1 for c in cells if c["outputs"]) > len(cells) // 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_clean_metadata_and_no_machine_paths(path):
    nb = json.loads(path.read_text())
    assert set(nb["metadata"]) <= {"kernelspec", "language_info"}
    assert not MACHINE_PATH.search(path.read_text())
    first = "".join(code_cells(path)[0]["source"])
    assert first.startswith("# NBVAL_IGNORE_OUTPUT") and "torch.__version__" in first
