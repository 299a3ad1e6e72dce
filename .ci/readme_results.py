"""Fill README's results table from the executed notebooks' own ledger output.

Each notebook prints its ledger as Markdown in a cell that starts with the comment
``# README results``. The rows (first occurrence of each model wins, in notebook
order) replace the text between the README markers, so the README shows only what
a committed, executed notebook measured.

Usage: python .ci/readme_results.py   (run by ``make notebooks``)
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results:start -->", "<!-- results:end -->"
# notebook 07 prints the article's claims table in a cell starting "# README claims"
CLAIMS_START, CLAIMS_END = "<!-- claims:start -->", "<!-- claims:end -->"


def ledger_rows(path: Path) -> tuple[str, list[str]]:
    header, rows = "", []
    for cell in json.loads(path.read_text())["cells"]:
        if not "".join(cell.get("source", "")).startswith("# README results"):
            continue
        for out in cell.get("outputs", []):
            for line in "".join(out.get("text", "")).splitlines():
                if line.startswith("| model |"):
                    header = line
                elif line.startswith("| ") and not line.startswith("|---"):
                    rows.append(line)
    return header, rows


def _first(row: str, n: int) -> str:
    """The first ``n`` cells of a Markdown table row (drops the × columns that a ledger
    with a baseline adds: the README compares every model on the same columns)."""
    return "|".join(row.split("|")[: n + 1]) + "|"


def main() -> None:
    header, seen, table = "", set(), []
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        head, rows = ledger_rows(nb)
        header = header or head
        cols = header.count("|") - 1
        for row in rows:
            model = row.split("|")[1].strip()
            if model not in seen:
                seen.add(model)
                table.append(f"| {nb.name[:2]} {_first(row, cols)}")
    if not table:
        raise SystemExit("no '# README results' ledger output found in notebooks/")
    cols = header.count("|") - 1
    lines = [f"| nb {header}", "|---" * (cols + 1) + "|", *table]
    readme = (ROOT / "README.md").read_text()
    before, rest = readme.split(START)
    after = rest.split(END)[1]
    body = "\n".join(lines)
    readme = f"{before}{START}\n{body}\n{END}{after}"
    claims = cell_text("# README claims")
    if claims and CLAIMS_START in readme:
        before, rest = readme.split(CLAIMS_START)
        after = rest.split(CLAIMS_END)[1]
        readme = f"{before}{CLAIMS_START}\n{claims.strip()}\n{CLAIMS_END}{after}"
    (ROOT / "README.md").write_text(readme)
    print(
        f"README: {len(table)} result rows" + (", the claims table" if claims else "")
    )


def _shown(output: dict) -> str:
    """An output's printed text, or the Markdown it displays."""
    text = output.get("text") or output.get("data", {}).get("text/markdown", "")
    return "".join(text)


def cell_text(marker: str) -> str:
    """The printed (or displayed Markdown) output of the (first) notebook cell whose
    source starts with ``marker`` ("" if none)."""
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if "".join(cell.get("source", "")).startswith(marker):
                return "".join(_shown(o) for o in cell.get("outputs", []))
    return ""


if __name__ == "__main__":
    main()
