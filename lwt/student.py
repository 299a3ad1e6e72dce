"""Learner copies of the notebooks for a workshop: solutions removed.

    python -m lwt.student OUT        # make student: writes OUT/NN_*.ipynb

Each notebook is copied as committed, except:

- every **solution cell** is removed: the collapsed code cells
  (``jupyter.source_hidden``) other than the maintainers' ``# README results`` cells; a
  short Markdown cell takes its place, so the learner knows a solution existed there;
- the outputs of the **exercise cells** (the stubs, marked ``YOUR CODE``) are cleared,
  so the learner sees no answer printed before running their own code;
- sentences that point at a solution below (``Solutions are in the collapsed cell
  below``, ``solution 3 says…``) point at the course's full notebook instead
  (:data:`REWORDING`).

Everything else (text, figures, the other outputs) stays as committed, so the student
copy reads like the course and runs top to bottom like it (the stubs print "not yet"
instead of failing).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from pathlib import Path

from .data import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
PLACEHOLDER = (
    "*(The solution cell was removed from the student copy. Write your own above; "
    "the full notebook is in the course's `notebooks/` folder.)*"
)

FULL = "the course's full notebook (`notebooks/`)"
# Markdown that points at a removed solution, and how the student copy words it.
REWORDING = [
    (
        re.compile(
            r"[Tt]he solution is (?:in the collapsed cell|collapsed)\s+below it"
        ),
        f"the solution is in {FULL}",
    ),
    (
        re.compile(
            r"Solutions are in the collapsed cell (?:below|after [^(.]*?)"
            r"(?:\s+\([^)]*\))?\."
        ),
        f"Solutions are in {FULL}.",
    ),
    (re.compile(r"Solution \(expand\):"), f"The solution is in {FULL}."),
    (
        re.compile(r"\b([Tt]he )?[Ss]olution(?= \d| times)"),
        "the full notebook's solution",
    ),
]


def reword(markdown: str) -> str:
    """A Markdown cell's text as the student copy shows it (:data:`REWORDING`)."""
    for pattern, replacement in REWORDING:
        markdown = pattern.sub(replacement, markdown)
    return markdown


def is_solution(cell: dict) -> bool:
    """A collapsed code cell that is not a maintainers' ``# README results`` cell."""
    hidden = cell.get("metadata", {}).get("jupyter", {}).get("source_hidden", False)
    src = "".join(cell.get("source", ""))
    return (
        cell["cell_type"] == "code"
        and hidden
        and not src.startswith("# README results")
    )


def is_exercise(cell: dict) -> bool:
    """A code cell the learner fills in (a stub marked ``YOUR CODE``)."""
    return cell["cell_type"] == "code" and "YOUR CODE" in "".join(
        cell.get("source", "")
    )


def student_copy(nb: dict) -> tuple[dict, list[dict]]:
    """``(student notebook, removed solution cells)`` of a notebook's JSON."""
    out, removed = copy.deepcopy(nb), []
    cells = []
    for cell in out["cells"]:
        if is_solution(cell):
            removed.append(cell)
            cells.append(
                {"cell_type": "markdown", "metadata": {}, "source": PLACEHOLDER}
            )
            continue
        if is_exercise(cell):
            cell["outputs"], cell["execution_count"] = [], None
        if cell["cell_type"] == "markdown":
            cell["source"] = reword("".join(cell["source"]))
        cells.append(cell)
    for cell in cells:
        cell.pop("id", None)  # nbformat 4.4: ids are optional; fresh copies need none
    out["cells"] = cells
    out["nbformat_minor"] = min(out.get("nbformat_minor", 4), 4)
    return out, removed


def make_student(out: str | Path, notebooks: Path = NOTEBOOKS) -> list[Path]:
    """Write the student copy of every course notebook into ``out``; returns the
    paths."""
    out = Path(out)
    if out.resolve() == notebooks.resolve():
        raise ValueError("out must be another folder than the course notebooks")
    if not any(notebooks.glob("[0-9][0-9]_*.ipynb")):
        raise FileNotFoundError(
            f"no course notebooks in {notebooks} (a source checkout)"
        )
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        nb, _ = student_copy(json.loads(path.read_text()))
        target = out / path.name
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        written.append(target)
    return written


def _main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m lwt.student", description=__doc__.split("\n")[0]
    )
    p.add_argument("out", type=Path, help="folder for the student notebooks")
    args = p.parse_args(argv)
    for path in make_student(args.out):
        print(path)


if __name__ == "__main__":
    _main()
