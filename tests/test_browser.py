"""The course in a browser (issue 14): what a learner sees after ``make lab``.

JupyterLab runs from this environment on a copy of the notebooks in pytest's tmp folder
(outputs cleared, so every prompt, figure and widget on the page is fresh, and the
committed notebooks are never autosaved over). Headless Chromium (Debian's
``chromium``, driven by Playwright) loads JupyterLab once; each notebook in turn opens
in it (the app's ``docmanager:open``), becomes the current tab, runs all cells from the
Run menu, and is closed after its checks, its kernel shut down. The checks of the page:
no exception, as many figures as the committed notebook has, every widget rendered, and
one slider (or checkbox) of the notebook's widget changing the widget's output. It also
saves the notebook from the page and checks the file: every non-empty code cell run, no
error output, and the outputs of the cells marked ``# NBVAL_CHECK_OUTPUT`` as committed,
compared by nbval's own code, so this run checks what nbval would.

Environment: ``LWT_BROWSER`` picks the notebooks (``all``, the default; ``none``; or
name prefixes such as ``00,07``), ``LWT_BROWSER_DIR`` the folder (default
``notebooks/``), ``LWT_BROWSER_TIMEOUT`` the seconds allowed to run one notebook
(default 300), ``LWT_CHROMIUM`` the browser (default: the first of ``chromium``,
``chromium-browser``, ``google-chrome``, ``chrome`` on the PATH; on macOS e.g.
``/Applications/Google Chrome.app/Contents/MacOS/Google Chrome``) and
``LWT_BROWSER_COPY`` which copy a learner opens: ``course`` (the default, the notebooks
as committed) or ``student`` (``make student``'s copies, solutions removed: a workshop's
learners see these). The kernels see ``LWT_QUICK=1`` and the caller's ``LWT_DATA_DIR``
and ``OMP_NUM_THREADS`` (make test: 1).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import nbformat
import pytest
from nbval.plugin import coalesce_streams

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

TIMES = "browser time (per notebook)"

NOTEBOOK_DIR = Path(
    os.environ.get("LWT_BROWSER_DIR", Path(__file__).parents[1] / "notebooks")
)
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
CHROMIUM = os.environ.get("LWT_CHROMIUM") or next(
    (b for b in BROWSERS if shutil.which(b)), "chromium"
)
# Without a browser the test is skipped with one line (a learner's laptop: macOS,
# Windows, Linux without root); CI sets LWT_REQUIRE_BROWSER=1 and fails instead.
REQUIRE_BROWSER = os.environ.get("LWT_REQUIRE_BROWSER") == "1"
COPY = os.environ.get("LWT_BROWSER_COPY", "course")
RUN_TIMEOUT_S = float(os.environ.get("LWT_BROWSER_TIMEOUT", "300"))
START_TIMEOUT_S = 120  # the server to answer, then a notebook's kernel to be idle
SETTLE_TIMEOUT_S = 60  # figures and widgets to render after the last cell ran
WIDGET_TIMEOUT_S = 120  # a moved slider's output to change
VIEWPORT = {"width": 1280, "height": 1000}
# What nbval leaves out of a comparison (nbval.plugin.IPyNbFile's skip_compare, without
# --nbdime): images and widget model ids differ from run to run.
NBVAL_SKIP_COMPARE = (
    "metadata", "traceback", "prompt_number", "output_type", "name",
    "execution_count", "application/vnd.jupyter.widget-view+json", "image/png",
    "image/jpeg",
)  # fmt: skip

# An exception and a warning both render as application/vnd.jupyter.stderr; the text
# tells them apart: IPython's traceback header, the "Cell In[n], line k" that starts a
# SyntaxError, or JupyterLab's own message for an output that failed to render.
ERROR_TEXT = re.compile(
    r"Traceback \(most recent call last\)|\A\s*Cell In\[\d+\], line \d+"
    r"|\AJavascript Error:"
)
# What ipywidgets' renderer writes in place of a widget it could not (yet) show.
WIDGET_FAILED, WIDGET_LOADING = "Error displaying widget", "Loading widget..."

# Everything the checks read from the page, in one call. textContent, not innerText:
# JupyterLab skips rendering of cells out of view (content-visibility), not their DOM.
PAGE_STATE_JS = """() => {
  const nb = document.querySelector('.jp-NotebookPanel');
  const all = (sel) => nb ? [...nb.querySelectorAll(sel)] : [];
  const own = (e) => [...e.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE)
    .map((n) => n.textContent).join('').trim();
  const images = all('.jp-OutputArea-output[data-mime-type="image/png"] img');
  const dialog = document.querySelector('.jp-Dialog');
  const STDERR = 'application/vnd.jupyter.stderr';
  const status = nb?.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status;
  return {
    prompts: all('.jp-CodeCell .jp-InputArea-prompt').map((e) => e.textContent.trim()),
    codeCells: all('.jp-CodeCell').length,
    stderr: all(`.jp-OutputArea-output[data-mime-type="${STDERR}"]`)
      .map((e) => e.textContent),
    figures: images.filter((i) => i.complete && i.naturalWidth > 0).length,
    broken: images.filter((i) => i.complete && i.naturalWidth === 0).length,
    widgets: all('.jp-OutputArea-output .jupyter-widgets').length,
    messages: all('.jp-OutputArea-output').map(own).filter((t) => t),
    dialog: dialog ? dialog.innerText : null,
    idle: status === 'idle',
  };
}"""
# Run All has finished: no [*] prompt left, some [n] prompt, the kernel idle (or a
# dialog, such as "kernel died", that will not go away by waiting).
RUN_DONE_JS = f"""() => {{
  const s = ({PAGE_STATE_JS})();
  if (s.dialog !== null) return true;
  return s.idle && !s.prompts.some((p) => p.includes('*'))
    && s.prompts.some((p) => /\\d/.test(p));
}}"""
# Figures and widgets have rendered: at least n images, no widget still loading.
SETTLED_JS = f"""(n) => {{
  const s = ({PAGE_STATE_JS})();
  return s.figures >= n && !s.messages.some((t) => t.startsWith('Loading widget'));
}}"""
# The outputs of a control's widgets (the Output widgets of its cell, else of the page):
# their items' HTML, their images and items.
WIDGET_OUTPUT_JS = """(control) => {
  let outs = control.closest('.jp-Cell').querySelectorAll('.widget-output');
  if (!outs.length) {
    outs = document.querySelectorAll('.jp-NotebookPanel .widget-output');
  }
  const all = (sel) => [...outs].flatMap((o) => [...o.querySelectorAll(sel)]);
  const items = all('.jp-OutputArea-output');  // not the area: its style changes
  return {
    html: items.map((e) => e.outerHTML).join('\\n'),
    images: all('img').length,
    items: items.length,
  };
}"""
# The output has changed and is whole again: a redraw clears the old output and then
# adds its items one by one, so it is done when it has as many as before. (The kernel's
# idle status is no signal: ipykernel reports idle for other messages meanwhile.)
WIDGET_REDRAWN_JS = f"""([control, before]) => {{
  const now = ({WIDGET_OUTPUT_JS})(control);
  return now.html !== before.html && now.images >= before.images
    && now.items >= before.items;
}}"""


def select_notebooks(spec: str) -> list[Path]:
    """The notebooks ``LWT_BROWSER`` names: ``all``, ``none`` or name prefixes."""
    notebooks = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if spec.strip().lower() in ("", "all"):
        return notebooks
    if spec.strip().lower() == "none":
        return []
    prefixes = [p.strip() for p in spec.split(",") if p.strip()]
    unknown = [p for p in prefixes if not any(n.name.startswith(p) for n in notebooks)]
    if unknown:
        raise pytest.UsageError(
            f"LWT_BROWSER={spec}: no notebook in {NOTEBOOK_DIR} starts with "
            + ", ".join(unknown)
        )
    return [n for n in notebooks if any(n.name.startswith(p) for p in prefixes)]


def notebook_params() -> list[Any]:
    """One pytest parameter per selected notebook, or one skipped one saying why."""
    spec = os.environ.get("LWT_BROWSER", "all")
    selected = select_notebooks(spec)
    if not selected:
        reason = f"LWT_BROWSER={spec} selects no notebook in {NOTEBOOK_DIR}"
        return [pytest.param(None, id="none", marks=pytest.mark.skip(reason=reason))]
    return [pytest.param(path, id=path.stem) for path in selected]


@dataclass(frozen=True)
class Committed:
    """What a committed notebook holds: its code cells, figures and widget outputs, and
    the outputs of the cells nbval checks (``# NBVAL_CHECK_OUTPUT``), by code cell."""

    sources: list[str]
    figures: int
    uses_widgets: bool
    checked: dict[int, list[Any]]

    @classmethod
    def read(cls, path: Path) -> Committed:
        """Read it from the .ipynb file."""
        code = code_cells(nbformat.read(path, as_version=4))
        outputs = [o.get("data", {}) for c in code for o in c.outputs]
        sources = [c.source for c in code]
        widget_view = "application/vnd.jupyter.widget-view+json"
        return cls(
            sources=sources,
            figures=sum("image/png" in data for data in outputs),
            uses_widgets=any(widget_view in data for data in outputs)
            or any("ipywidgets" in source for source in sources),
            checked=checked_outputs(code),
        )


# Open a notebook in a tab and make it the current one (the menus act on it).
OPEN_JS = """async (path) => {
  const app = window.jupyterapp;
  const widget = await app.commands.execute(
    'docmanager:open', {path, factory: 'Notebook'});
  await widget.context.ready;
  app.shell.activateById(widget.id);
}"""
# Save the notebook's tab (resolves once the server has the file).
SAVE_JS = """async (path) => {
  for (const widget of window.jupyterapp.shell.widgets('main')) {
    if (widget.context?.path === path) return await widget.context.save();
  }
  throw new Error(`no tab shows ${path}`);
}"""


def code_cells(nb: Any) -> list[Any]:
    """A notebook's code cells (nbformat nodes: sources and texts as one string)."""
    return [c for c in nb.cells if c.cell_type == "code"]


def checked_outputs(code: list[Any]) -> dict[int, list[Any]]:
    """``{code cell index: outputs}`` of the cells whose output nbval compares under
    ``--nbval-lax``: marked ``# NBVAL_CHECK_OUTPUT`` (or tagged), and run."""
    from nbval.plugin import find_comment_markers, find_metadata_tags

    def checks(cell: Any) -> bool:  # as nbval reads a cell's options: comments win
        options = dict(find_metadata_tags(cell.metadata))
        options.update(find_comment_markers(cell.source))
        return bool(options.get("check")) and cell.execution_count is not None

    return {i: coalesce_streams(c.outputs) for i, c in enumerate(code) if checks(c)}


def output_mismatch(saved: list[Any], committed: list[Any]) -> str:
    """nbval's own comparison of a cell's outputs (text and HTML, not images); '' when
    they agree, else nbval's account of the first difference."""
    from nbval.plugin import IPyNbCell, nocolors

    differences: list[str] = []
    stand_in = SimpleNamespace(  # the parts of an nbval test item compare_outputs uses
        parent=SimpleNamespace(skip_compare=NBVAL_SKIP_COMPARE, sanitize_patterns={}),
        colors=nocolors,
        format_output_compare=lambda key, ref, test: differences.append(
            f"{key}: committed {ref!r}, now {test!r}"
        ),
    )
    stand_in.sanitize = lambda text: IPyNbCell.sanitize(stand_in, text)
    if IPyNbCell.compare_outputs(stand_in, coalesce_streams(saved), committed):
        return ""
    return "; ".join(differences or stand_in.comparison_traceback)


def clear_outputs(path: Path) -> None:
    """Remove a notebook's outputs and prompt numbers, in place."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A JupyterLab server of this test: its address, token, process and REST API."""

    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path
    committed: dict[str, Committed]  # each notebook as copied, before its outputs went
    setup_s: dict[str, float] = field(default_factory=dict)  # server start, page load

    def api(self, path: str, method: str = "GET") -> Any:
        """Call the server's REST API (never through a proxy) and decode its JSON."""
        request = urllib.request.Request(
            f"{self.url}/api/{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the server wrote, for error messages."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def wait_ready(self) -> None:
        """Wait until the server answers; fail if it exits or takes too long."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"JupyterLab exited with {self.process.returncode}:\n"
                    + self.log_tail()
                )
            try:
                self.api("status")
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"JupyterLab did not answer in {START_TIMEOUT_S} s:\n"
                        + self.log_tail()
                    ) from None
                time.sleep(0.2)

    def session(self, notebook: str) -> dict[str, Any] | None:
        """The notebook's session (with its kernel), if the page started one."""
        sessions = self.api("sessions")
        return next((s for s in sessions if s["path"] == notebook), None)

    def wait_idle(self, notebook: str, timeout_s: float) -> None:
        """Wait until the notebook's kernel exists and is idle."""
        deadline = time.monotonic() + timeout_s
        while True:
            session = self.session(notebook)
            if session and session["kernel"]["execution_state"] == "idle":
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{notebook}'s kernel not idle in {timeout_s:.0f} s")
            time.sleep(0.25)

    def close_session(self, notebook: str) -> None:
        """Shut the notebook's kernel down (it is done with), freeing its memory."""
        session = self.session(notebook)
        if session:
            self.api(f"sessions/{session['id']}", "DELETE")

    def stop(self) -> None:
        """Shut every kernel down, then the server (its whole process group)."""
        try:
            for kernel in self.api("kernels"):
                self.api(f"kernels/{kernel['id']}", "DELETE")
        except (OSError, urllib.error.URLError, json.JSONDecodeError):
            pass  # the server is gone already; its kernels exit with their parent
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium (the system's, never a download) under Playwright."""
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        pytest.fail(
            "tests/test_browser.py needs Playwright for Python: "
            f"{sys.executable} -m pip install -r requirements.txt (make test does it)",
            pytrace=False,
        )
    executable = shutil.which(CHROMIUM)
    if executable is None:
        why = (
            f"no Chromium/Chrome found ({CHROMIUM}): the notebooks were not run in "
            "a browser; install one (Debian: `make browser`) or set LWT_CHROMIUM"
        )
        if REQUIRE_BROWSER:
            pytest.fail(why + " (LWT_REQUIRE_BROWSER=1)", pytrace=False)
        pytest.skip(why)
    playwright = sync_playwright().start()
    try:
        try:
            chromium = playwright.chromium.launch(executable_path=executable)
        except Error as exc:
            pytest.fail(f"Chromium ({executable}) did not start: {exc}", pytrace=False)
        yield chromium
        chromium.close()
    finally:
        playwright.stop()


@pytest.fixture(scope="module")
def page(browser: Browser, lab: Lab) -> Iterator[Page]:
    """One tab with JupyterLab loaded (once: each notebook opens in it in turn), in a
    workspace of its own (no tabs restored from an earlier run)."""
    started = time.monotonic()
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(30_000)
    page.goto(f"{lab.url}/lab/workspaces/lwt-browser-test?reset&token={lab.token}")
    page.wait_for_function(
        "() => window.jupyterapp?.commands.hasCommand('docmanager:open')"
    )
    close_tabs(page)  # the launcher
    lab.setup_s["page load"] = time.monotonic() - started
    yield page
    page.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """JupyterLab from this environment, on 127.0.0.1, on a copy of the notebooks."""
    home = tmp_path_factory.mktemp("browser")
    root = home / "notebooks"
    ignore = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__")
    if COPY == "student":
        from lwt.student import make_student

        make_student(root, NOTEBOOK_DIR)
    elif COPY == "course":
        shutil.copytree(NOTEBOOK_DIR, root, ignore=ignore)
    else:
        raise pytest.UsageError(f"LWT_BROWSER_COPY={COPY}: use course or student")
    committed = {path.name: Committed.read(path) for path in root.glob("*.ipynb")}
    for path in root.glob("*.ipynb"):
        clear_outputs(path)
    # Settings of its own: no news toast over the page, none of the user's settings,
    # and every cell in the page (by default JupyterLab 4 renders only the cells near
    # the view, so a long notebook's later cells, figures and widgets are not there).
    settings = home / "settings" / "@jupyterlab"
    for extension, name, value in (
        ("apputils-extension", "notification", '{"fetchNews": "false", '
         '"checkForUpdates": false}'),
        ("notebook-extension", "tracker", '{"windowingMode": "none"}'),
    ):  # fmt: skip
        (settings / extension).mkdir(parents=True)
        (settings / extension / f"{name}.jupyterlab-settings").write_text(value)
    env = dict(
        os.environ,
        LWT_QUICK="1",
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
    )
    port, token = free_port(), secrets.token_urlsafe(24)
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: open a notebook
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # Jupyter refuses root otherwise
    log = home / "jupyterlab.log"
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )
    server = Lab(f"http://127.0.0.1:{port}", token, process, log, committed)
    try:
        server.wait_ready()
        server.setup_s["server start"] = time.monotonic() - started
        yield server
    finally:
        server.stop()


def open_notebook(page: Page, lab: Lab, notebook: str) -> None:
    """Open the notebook in the JupyterLab page (loaded once for all of them) and wait
    for its idle kernel."""
    page.evaluate(OPEN_JS, notebook)
    page.locator(".jp-NotebookPanel .jp-Cell").first.wait_for()
    # The Run menu acts on the current notebook: wait until this one is it (on a busy
    # machine the menu can open before, its items greyed out).
    page.wait_for_function(
        "(path) => window.jupyterapp.shell.currentWidget?.context?.path === path",
        arg=notebook,
    )
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        # A learner clicks "Select" if JupyterLab asks which kernel to start.
        dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
        if dialog.count():
            dialog.locator(".jp-mod-accept").click()
        session = lab.session(notebook)
        if session and session["kernel"]["execution_state"] == "idle":
            if page.evaluate(f"({PAGE_STATE_JS})().idle"):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no idle kernel for {notebook} in {START_TIMEOUT_S} s")
        page.wait_for_timeout(250)


def close_tabs(page: Page) -> None:
    """Close every tab without saving (the test saved what it reads; a widget moved
    since is a change JupyterLab would otherwise ask about)."""
    page.evaluate(
        """async () => {
          const app = window.jupyterapp;
          for (const widget of app.shell.widgets('main')) {
            if (widget.context) widget.context.model.dirty = false;
          }
          await app.commands.execute('application:close-all');
        }"""
    )
    page.locator(".jp-NotebookPanel").first.wait_for(state="detached")


def run_all(page: Page, lab: Lab, notebook: str, committed: Committed) -> None:
    """Run > Run All Cells, then wait until every cell ran and outputs rendered."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Run All Cells$")).click()
    try:
        page.wait_for_function(RUN_DONE_JS, timeout=RUN_TIMEOUT_S * 1000, polling=500)
    except PlaywrightTimeout:
        raise TimeoutError(
            f"Run All not done in {RUN_TIMEOUT_S:.0f} s (LWT_BROWSER_TIMEOUT)"
        ) from None
    lab.wait_idle(notebook, START_TIMEOUT_S)
    settle(page, committed.figures)


def settle(page: Page, figures: int) -> None:
    """Wait (a bounded while) for the figures and widgets to render; the checks
    after it say what is still missing."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(
            SETTLED_JS, arg=figures, timeout=SETTLE_TIMEOUT_S * 1000, polling=250
        )
    except PlaywrightTimeout:
        pass


def page_problems(page: Page, committed: Committed) -> list[str]:
    """What is wrong on the page: exceptions, cells not run, figures and widgets
    missing; an empty list when nothing is."""
    state = page.evaluate(PAGE_STATE_JS)
    problems = []
    if state["dialog"] is not None:
        problems.append(f"a dialog is open: {' '.join(state['dialog'].split())}")
    for text in state["stderr"]:
        if ERROR_TEXT.search(text):
            last = [line for line in text.splitlines() if line.strip()][-1]
            problems.append(f"exception in an output: {last.strip()}")
    if state["codeCells"] != len(committed.sources):
        problems.append(
            f"{state['codeCells']} code cells on the page, "
            f"{len(committed.sources)} in the notebook"
        )
    if state["figures"] < committed.figures:
        problems.append(
            f"{state['figures']} figures rendered, the committed notebook has "
            f"{committed.figures}"
        )
    if state["broken"]:
        problems.append(f"{state['broken']} figures did not load")
    failed = [m for m in state["messages"] if m.startswith(WIDGET_FAILED)]
    loading = [m for m in state["messages"] if m.startswith(WIDGET_LOADING)]
    if failed:
        problems.append(f"{len(failed)} widgets failed: {failed[0]}")
    if loading:
        problems.append(f"{len(loading)} widgets still say {WIDGET_LOADING!r}")
    if committed.uses_widgets and not state["widgets"]:
        problems.append("the notebook uses ipywidgets but no widget rendered")
    return problems


def saved_problems(page: Page, lab: Lab, notebook: str) -> list[str]:
    """Save the notebook from the page (File > Save's own call) and read it back
    through the REST API: non-empty code cells without an execution count, error
    outputs (the page shows neither prompt nor outputs for a collapsed solution cell,
    so it cannot say), and the cells nbval checks whose outputs differ from the
    committed ones."""
    page.evaluate(SAVE_JS, notebook)  # resolves once the server has written the file
    path = urllib.parse.quote(notebook)
    every = code_cells(
        nbformat.from_dict(lab.api(f"contents/{path}?content=1")["content"])
    )
    code = [c for c in every if c.source]
    problems = []
    unrun = [i + 1 for i, c in enumerate(code) if c.execution_count is None]
    if unrun:
        problems.append(f"code cells not run: {', '.join(map(str, unrun[:10]))}")
    for i, cell in enumerate(code):
        for out in cell.outputs:
            if out.output_type == "error":
                problems.append(f"code cell {i + 1}: {out.ename}: {out.evalue}")
    for i, committed in lab.committed[notebook].checked.items():
        differ = output_mismatch(every[i].outputs, committed)
        if differ:
            problems.append(f"code cell {i + 1} (NBVAL_CHECK_OUTPUT) differs: {differ}")
    return problems


def first_control(page: Page) -> tuple[Locator, Callable[[], None]] | None:
    """The first slider handle, else the first checkbox, with how to move it."""
    slider = page.locator(".jp-NotebookPanel .widget-slider .noUi-handle").first
    if slider.count():
        at_max = slider.get_attribute("aria-valuenow") == slider.get_attribute(
            "aria-valuemax"
        )
        return slider, lambda: slider.press("ArrowLeft" if at_max else "ArrowRight")
    checkbox = page.locator(".jp-NotebookPanel .widget-checkbox input").first
    if checkbox.count():
        return checkbox, checkbox.click
    return None


def move_widget(page: Page, lab: Lab, notebook: str, committed: Committed) -> str:
    """Move the notebook's first slider one step (or toggle its first checkbox) and
    wait until its widget's output changes; '' if it did, else what went wrong."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    found = first_control(page)
    if found is None:
        return "no slider or checkbox in the notebook's widgets"
    control, move = found
    handle = control.element_handle()
    before = handle.evaluate(WIDGET_OUTPUT_JS)
    move()
    try:
        page.wait_for_function(
            WIDGET_REDRAWN_JS, arg=[handle, before], timeout=WIDGET_TIMEOUT_S * 1000
        )
    except PlaywrightTimeout:
        # Changed but smaller than before (a shorter printout) still counts.
        if handle.evaluate(WIDGET_OUTPUT_JS)["html"] == before["html"]:
            return f"moving its widget changed no output in {WIDGET_TIMEOUT_S} s"
    lab.wait_idle(notebook, WIDGET_TIMEOUT_S)
    settle(page, committed.figures)
    return ""


def screenshot(page: Page, path: Path) -> None:
    """The notebook in one picture: JupyterLab scrolls inside a fixed-size window,
    so the window is made as tall as the notebook (within Chromium's limit)."""
    height = page.evaluate(
        "() => Math.max(0, ...[...document.querySelectorAll('.jp-WindowedPanel-outer')]"
        ".map((e) => e.scrollHeight))"
    )
    page.set_viewport_size(
        {"width": VIEWPORT["width"], "height": min(max(height + 200, 1000), 16000)}
    )
    page.wait_for_timeout(1000)
    page.screenshot(path=path, full_page=True)


@pytest.mark.browser
@pytest.mark.parametrize("notebook", notebook_params())
def test_notebook_in_browser(
    notebook: Path,
    page: Page,
    lab: Lab,
    summary: Callable[[str, str], None],
    tmp_path: Path,
) -> None:
    """Run All in JupyterLab shows no exception, the NBVAL_CHECK_OUTPUT cells' outputs
    as committed, every figure and working widgets."""
    committed = lab.committed[notebook.name]
    phases: dict[str, float] = {}
    clock = time.monotonic()
    console: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error":
            console.append(message.text)

    page.on("console", on_console)

    def lap(phase: str) -> None:
        nonlocal clock
        phases[phase], clock = time.monotonic() - clock, time.monotonic()

    problems: list[str] = []
    try:
        open_notebook(page, lab, notebook.name)
        lap("open")
        run_all(page, lab, notebook.name, committed)
        lap("run all")
        problems = page_problems(page, committed)
        problems += saved_problems(page, lab, notebook.name)
        if committed.uses_widgets and not problems:
            moved = move_widget(page, lab, notebook.name, committed)
            problems = ([moved] if moved else []) + page_problems(page, committed)
            lap("widget")
    except Exception as exc:  # a timeout or a missing element: still a screenshot
        problems.append(f"{type(exc).__name__}: {exc}")
    detail = ", ".join(f"{k} {v:.1f} s" for k, v in phases.items())
    if lab.setup_s:  # once, with the first notebook
        setup = ", ".join(f"{k} {v:.1f} s" for k, v in lab.setup_s.items())
        summary(TIMES, f"JupyterLab {setup}")
        lab.setup_s.clear()
    summary(TIMES, f"{notebook.name}: {sum(phases.values()):.0f} s ({detail})")
    try:
        if problems:
            shot = tmp_path / f"{notebook.stem}.png"
            screenshot(page, shot)
            problems.append(f"screenshot: {shot}")
            problems += [f"browser console: {m}" for m in console[:5]]
    finally:
        page.remove_listener("console", on_console)
        page.set_viewport_size(VIEWPORT)  # a screenshot made it tall
        try:
            close_tabs(page)
        finally:
            try:
                lab.close_session(notebook.name)
            except (OSError, urllib.error.URLError):
                pass
    total = sum(phases.values())
    assert not problems, f"{notebook.name} in JupyterLab ({total:.0f} s):\n  " + (
        "\n  ".join(problems)
    )


def test_checked_cells_are_found_and_compared_as_nbval_does() -> None:
    """The saved-file check (no browser needed): it compares only the cells nbval
    checks, and flags a changed number there but not split or merged streams."""

    def cell(source: str, text: str | list[str], tags: tuple[str, ...] = ()) -> dict:
        out = {"output_type": "stream", "name": "stdout", "text": text}
        meta = {"tags": list(tags)} if tags else {}
        return {"cell_type": "code", "execution_count": 1, "metadata": meta,
                "source": source, "outputs": [out]}  # fmt: skip

    cells = [
        cell("# NBVAL_CHECK_OUTPUT\nprint(1)", ["acc 1\n", "size 2\n"]),
        {"cell_type": "markdown", "metadata": {}, "source": "text"},
        cell("print(2)", "unmarked\n"),
        cell("# NBVAL_IGNORE_OUTPUT\nprint(3)", "ignored\n"),
        cell("print(4)", "tagged 4\n", tags=("nbval-check-output",)),
    ]
    on_disk = json.dumps({"metadata": {}, "nbformat": 4, "nbformat_minor": 4,
                          "cells": cells})  # fmt: skip
    checked = checked_outputs(code_cells(nbformat.reads(on_disk, as_version=4)))
    assert list(checked) == [0, 3]  # code cells 0 and 3
    as_saved = [nbformat.from_dict(o) for o in (
        {"output_type": "stream", "name": "stdout", "text": "acc 1\n"},
        {"output_type": "stream", "name": "stdout", "text": "size 2\n"},
    )]  # fmt: skip
    assert output_mismatch(as_saved, checked[0]) == ""
    as_saved[1]["text"] = "size 3\n"
    assert "size 3" in output_mismatch(as_saved, checked[0])
    assert output_mismatch([], checked[3]) != ""
