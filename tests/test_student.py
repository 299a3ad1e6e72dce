"""make student: learner copies with the solutions removed, that still run."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from lwt import student

NOTEBOOKS = sorted(student.NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _src(cell):
    return "".join(cell.get("source", ""))


def _lines(cell):
    """A cell's distinctive code lines (long enough not to occur by chance)."""
    return {ln.strip() for ln in _src(cell).splitlines() if len(ln.strip()) >= 25}


@pytest.fixture(scope="module")
def copies(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return out, student.make_student(out)


def test_every_notebook_is_copied(copies):
    out, written = copies
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    assert len(NOTEBOOKS) >= 8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_no_solution_text_survives(path):
    nb = json.loads(path.read_text())
    copy, removed = student.student_copy(nb)
    assert removed, f"{path.name} has no solution cells"
    kept = [c for c in copy["cells"] if c["cell_type"] == "code"]
    kept_lines = {ln.strip() for c in kept for ln in _src(c).splitlines()}
    kept_outputs = json.dumps([c.get("outputs", []) for c in kept])
    original_others = set().union(*(_lines(c) for c in nb["cells"] if c not in removed))
    other_outputs = json.dumps(
        [c.get("outputs", []) for c in nb["cells"] if c not in removed]
    )
    for cell in removed:
        for line in _lines(cell) - original_others:  # lines only the solution had
            assert line not in kept_lines, (
                f"{path.name}: solution line survived: {line}"
            )
        for out in cell.get("outputs", []):  # a solution's printed answers are gone too
            for ln in "".join(out.get("text", "")).splitlines():
                if len(ln) >= 25 and json.dumps(ln)[1:-1] not in other_outputs:
                    assert json.dumps(ln)[1:-1] not in kept_outputs
    for cell in kept:
        if "YOUR CODE" in _src(cell):
            assert cell["outputs"] == [] and cell["execution_count"] is None
    # everything else as committed
    others = [c for c in nb["cells"] if c not in removed]
    assert len(copy["cells"]) == len(nb["cells"])
    for a, b in zip(
        [c for c in copy["cells"] if _src(c) != student.PLACEHOLDER],
        others,
        strict=True,
    ):
        want = student.reword(_src(b)) if b["cell_type"] == "markdown" else _src(b)
        assert _src(a) == want


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_the_student_copy_reads_right(path):
    """No sentence points at a removed solution, and no text quotes a number that only
    a removed solution printed (a summary must not give an exercise away)."""
    nb = json.loads(path.read_text())
    copy, removed = student.student_copy(nb)
    text = "\n".join(
        _src(c)
        for c in copy["cells"]
        if c["cell_type"] == "markdown" and _src(c) != student.PLACEHOLDER
    )
    for phrase in ("collapsed", "(expand)", "click to expand"):
        assert phrase not in text, f"{path.name}: '{phrase}' in a student copy"
    assert not re.search(r"(?<!full notebook's )\bsolution \d", text), path.name
    kept_out = json.dumps([c.get("outputs", []) for c in copy["cells"]])
    for cell in removed:
        printed = json.dumps(cell.get("outputs", []))
        for number in set(re.findall(r"\d+\.\d\d+ ?%", printed)):
            if number not in kept_out:
                assert number not in text, (
                    f"{path.name}: {number} quotes a removed solution"
                )


def _names(tree, ctx):
    return {
        n.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)
    }


def _defined(tree):
    found = _names(tree, ast.Store)
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            found.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            found |= {(a.asname or a.name).split(".")[0] for a in n.names}
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_later_cells_need_nothing_only_a_solution_defined(path):
    """No kept cell reads a name that only a removed solution cell defined (the stubs
    define the learner's functions themselves)."""
    nb = json.loads(path.read_text())
    _, removed = student.student_copy(nb)
    defined_by_kept: set[str] = set()
    solution_only: set[str] = set()
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        src = "\n".join(
            ln
            for ln in _src(cell).splitlines()
            if not ln.lstrip().startswith(("%", "!"))
        )
        tree = ast.parse(src)
        if cell in removed:
            solution_only |= _defined(tree) - defined_by_kept
            continue
        missing = (
            (_names(tree, ast.Load) & solution_only) - defined_by_kept - _defined(tree)
        )
        assert not missing, (
            f"{path.name}: a kept cell uses {sorted(missing)} from a solution"
        )
        defined_by_kept |= _defined(tree)


def test_cli_writes_the_folder(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "lwt.student", str(tmp_path / "s")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert len(out.stdout.splitlines()) == len(NOTEBOOKS)
    with pytest.raises(ValueError, match="another folder"):
        student.make_student(tmp_path, notebooks=tmp_path)
    with pytest.raises(FileNotFoundError, match="no course notebooks"):
        student.make_student(tmp_path / "out", notebooks=tmp_path / "empty")


@pytest.mark.notebooks
def test_student_copies_pass_nbval(copies, summary):
    """Every student copy runs top to bottom under nbval in quick mode (as ``make
    nbval`` runs the course notebooks): no exception, and each ``# NBVAL_CHECK_OUTPUT``
    cell prints what it printed when committed. (A pytest of its own, on the copies in
    a tmp folder.)"""
    out, _ = copies
    shutil.copy(student.NOTEBOOKS / "conftest.py", out)  # its time per notebook
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(out), "--nbval-lax", "--nbval-current-env",
         "-q", "-p", "no:cacheprovider", "--rootdir", str(out),
         "-W", "ignore::DeprecationWarning:jupyter_client.*"],
        cwd=out, env=dict(os.environ, LWT_QUICK="1"), capture_output=True, text=True,
        timeout=1800,
    )  # fmt: skip
    times = re.findall(r"^(\S+\.ipynb: \d+ s.*)$", run.stdout, re.M)  # its conftest's
    for line in times:
        summary("student copies under nbval (quick mode)", line)
    tail = "\n".join(run.stdout.splitlines()[-60:])
    assert run.returncode == 0, f"nbval on the student copies failed:\n{tail}"
    assert len(times) == len(NOTEBOOKS), f"not every copy ran under nbval:\n{tail}"
