"""Execute notebooks top to bottom in place (full mode), then strip volatile metadata.

Usage: python .ci/execute_notebooks.py notebooks/00_baselines_and_measurement.ipynb ...

Kept: outputs, execution counts, cell tags and ``jupyter.source_hidden`` (collapsed
solutions), the kernelspec. Dropped: timings, widget state, language_info details.
Fails on error outputs and on absolute paths of this machine in any output.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.output_widget import OutputWidget

KEEP_CELL_META = ("tags", "jupyter", "collapsed")
MACHINE_PATH = re.compile(r"/(work|tmp|root|home|Users)/[\w.-]+/")


def strip(nb: nbformat.NotebookNode) -> None:
    nb.metadata = nbformat.from_dict(
        {
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3",
                "language": "python",
            },
            "language_info": {"name": "python"},
        }
    )
    for cell in nb.cells:
        cell.metadata = nbformat.from_dict(
            {k: v for k, v in cell.metadata.items() if k in KEEP_CELL_META}
        )
        cell.pop("id", None)


def check(nb: nbformat.NotebookNode, path: Path) -> None:
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                raise SystemExit(f"{path}: cell {i} has an error output")
            if MACHINE_PATH.search(json.dumps(out)):
                raise SystemExit(f"{path}: cell {i} output shows a machine path")


def slowest(nb: nbformat.NotebookNode, path: Path, top: int = 8) -> None:
    """Print the cells that took longest (nbclient's timing metadata)."""
    times = []
    for i, cell in enumerate(nb.cells):
        t = cell.metadata.get("execution", {})
        if "iopub.execute_input" in t and "shell.execute_reply" in t:
            start, end = (
                datetime.fromisoformat(t[k].replace("Z", "+00:00"))
                for k in ("iopub.execute_input", "shell.execute_reply")
            )
            times.append(((end - start).total_seconds(), i))
    for sec, i in sorted(times, reverse=True)[:top]:
        print(f"{path.name} cell {i}: {sec:.1f} s")


class _LocalOutputWidget(OutputWidget):
    """nbclient's stand-in for an ``ipywidgets.Output``, keeping its outputs here.

    nbclient's own sends each change of the widget's outputs back to the kernel on the
    shell channel while it waits there for the cell's reply; with a large figure inside
    the widget that hung notebook 07's widget cell for good (kernel idle, no reply read;
    jupyter/nbclient#312). The widget state is stripped from the committed notebook,
    so nothing needs to go back.
    """

    def sync_state(self) -> None:
        pass


def main(paths: list[str]) -> None:
    for name in paths:
        path = Path(name)
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        client = NotebookClient(
            nb,
            timeout=900,  # per cell: a hung cell fails after 15 min
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.widget_registry["@jupyter-widgets/output"]["OutputModel"] = (
            _LocalOutputWidget
        )
        client.execute()
        slowest(nb, path)
        strip(nb)
        nb.nbformat_minor = 4
        check(nb, path)
        nbformat.write(nb, path)
        print(f"{path}: executed in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
