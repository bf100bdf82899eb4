"""The course in a real JupyterLab, in a real (headless) browser: what a learner sees.

nbval proves that the cells execute; it does not prove that a learner sees the lesson work. A
widget can execute fine and still show "Loading widget..." or a model error in JupyterLab. This
test starts JupyterLab from the project's environment on a copy of every lesson (the unfilled
notebooks/ that learners open, found by glob; with ``COURSE_BROWSER_FOLDERS=solutions,notebooks``
the solution notebooks too), opens each in Debian's Chromium driven by Playwright,
runs Run > Run All Cells in the quick setting (COURSE_QUICK=1), waits for the kernel to be idle,
and asserts:

* no error output anywhere (cells tagged ``raises-exception`` may show theirs);
* every widget rendered: no "Loading widget", "Error displaying widget" or JavaScript error view,
  the widget's DOM there (closed widgets, such as finished progress bars, are hidden and skipped);
* at least one widget responds to input (a slider moved with the keyboard, or another value
  picked, changes what the widget shows);
* in the unfilled exercise notebooks, the fallback note ("uses the course's reference"), the
  checks' "not attempted yet" and the quick-setting note: all that tests/test_exercise_notebooks.py
  asserts, which skips the notebooks this test runs.

A screenshot of each lesson, and JupyterLab's log, go to ``test-artifacts/browser/``.

Run it alone:  ``python -m pytest tests/test_browser.py``

Environment variables:

* ``COURSE_BROWSER_LESSONS=01,03`` -- only these lessons (default: every lesson present);
* ``COURSE_BROWSER_FOLDERS=solutions,notebooks`` -- which versions (default ``notebooks``: the
  solution notebooks have the same cells and widgets, and nbval already runs every one of them in
  full; running them here too took half of this test's time, a quarter of the suite's);
* ``COURSE_BROWSER_CHROMIUM=/path/to/chromium`` -- the browser (default ``/usr/bin/chromium``);
* ``COURSE_BROWSER_WORKERS=2`` -- notebooks run at once (one Lab, one browser, a page each);
* ``COURSE_BROWSER_TIMEOUT=600`` -- seconds one notebook may take to run all its cells.

Without Chromium the test is skipped, except under ``CI`` where that is a failure. Every wait has
a deadline, so a port already taken, a kernel that does not start, a kernel that dies, a dialog
over the notebook or a crashed browser gives a clear failure, not a hang; JupyterLab, its kernels
and the browser are stopped in any case. The last tests below prove it, and prove that a widget
that does not render fails the test.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "browser"

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
LAB_START_TIMEOUT = 90  # s: Lab answers /api/status in 2-3 s when the machine is idle
KERNEL_START_TIMEOUT = 120  # s: from the notebook's page loaded to its kernel idle
WIDGET_TIMEOUT = 30  # s: for widgets to leave "Loading widget..." once the cells have run
RUN_TIMEOUT = float(os.environ.get("COURSE_BROWSER_TIMEOUT", 600))  # s: Run All, one notebook
WORKERS = max(1, int(os.environ.get("COURSE_BROWSER_WORKERS", 2)))

# ipywidgets' renderer is a panel without the data-mime-type that every other renderer sets.
WIDGET_OUTPUT = ".jp-OutputArea-output:not([data-mime-type])"
FALLBACK_NOTE = "uses the course's reference"
NOT_ATTEMPTED = "not attempted yet"
QUICK_NOTE = "quick setting"


def _lessons():
    """The notebooks to open: every lesson of the folders COURSE_BROWSER_FOLDERS names (notebooks/ by
    default), or those of them COURSE_BROWSER_LESSONS names."""
    wanted = re.findall(r"\d+", os.environ.get("COURSE_BROWSER_LESSONS", ""))
    folders = re.findall(r"solutions|notebooks", os.environ.get("COURSE_BROWSER_FOLDERS", "notebooks"))
    found = []
    for folder in folders:
        for path in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb")):
            if not wanted or any(path.name.startswith(f"{int(w):02d}_") for w in wanted):
                found.append(f"{folder}/{path.name}")
    return found


LESSONS = _lessons()


def _chromium():
    path = os.environ.get("COURSE_BROWSER_CHROMIUM") or "/usr/bin/chromium"
    return path if os.access(path, os.X_OK) else shutil.which("chromium")


def _skip_or_fail(reason: str):
    """Without a browser: skip locally, fail under CI (where .ci/run installs one)."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason} (CI is set, so the browser test must run)", pytrace=False)
    pytest.skip(reason)


# --------------------------------------------------------------------------------------------
# JupyterLab: started on 127.0.0.1, a free port, a random token, throw-away settings; stopped
# with its whole process group and its kernels.
# --------------------------------------------------------------------------------------------


class LabError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A JupyterLab serving ``root``, with its settings, workspaces and runtime files in ``home``."""

    def __init__(self, root: Path, home: Path, *, port: int | None = None, env: dict | None = None,
                 start_timeout: float = LAB_START_TIMEOUT, log: Path | None = None):
        self.root, self.home = Path(root), Path(home)
        self.port = port or free_port()
        self.token = secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env, self.start_timeout = env or {}, start_timeout
        self.log = log or self.home / "jupyterlab.log"
        self.proc = None

    def start(self) -> "Lab":
        settings = self.home / "settings"
        for plugin, value in [("apputils-extension/notification", {"fetchNews": "false"}),
                              ("notebook-extension/tracker", {"windowingMode": "none"})]:
            file = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(json.dumps(value))
        env = {**os.environ, "JUPYTER_CONFIG_DIR": str(self.home / "config"),
               "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"), "IPYTHONDIR": str(self.home / "ipython"),
               "JUPYTER_PLATFORM_DIRS": "1", **self.env}
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}", f"--LabApp.user_settings_dir={settings}",
               f"--LabApp.workspaces_dir={self.home / 'workspaces'}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            # A session of its own: at the end, its whole process group is stopped at once.
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                taken = "address already in use" in tail.lower() or "is already in use" in tail.lower()
                self.stop()
                raise LabError(f"JupyterLab exited (code {self.proc.returncode}) before it answered on "
                               f"{self.url}" + (f": port {self.port} is already taken" if taken else "")
                               + f".\nThe end of its log ({self.log}):\n{tail}")
            try:
                self.api("GET", "/api/status", timeout=2)
                return self
            except (OSError, LabError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise LabError(f"JupyterLab did not answer on {self.url} within {self.start_timeout:.0f} s."
                               f"\nThe end of its log ({self.log}):\n{self.log_tail()}")
            time.sleep(0.3)

    def api(self, method: str, path: str, timeout: float = 10):
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            raise LabError(f"{method} {path}: HTTP {err.code}") from err
        return json.loads(body) if body else None

    def shutdown_kernel(self, notebook: str) -> None:
        """Stop the kernel of ``notebook`` (its session), so that finished lessons free their memory."""
        for session in self.api("GET", "/api/sessions") or []:
            if session.get("path") == notebook:
                self.api("DELETE", f"/api/sessions/{session['id']}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def leftovers(self) -> list[int]:
        """PIDs of processes started for this Lab (kernels have their connection file in our runtime dir)."""
        pids = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if str(self.home).encode() in (proc / "cmdline").read_bytes() and int(proc.name) != os.getpid():
                    pids.append(int(proc.name))
            except OSError:
                pass
        return pids

    def stop(self) -> None:
        """Stop the kernels, then Lab's process group (TERM, then KILL), then anything of ours left."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                for kernel in self.api("GET", "/api/kernels", timeout=5) or []:
                    self.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=10)
            except (OSError, LabError):
                pass
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # children that outlived Lab in its group
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        for pid in self.leftovers():  # kernels run in sessions of their own
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# --------------------------------------------------------------------------------------------
# One notebook in one page: open, Run All, wait, look.
# --------------------------------------------------------------------------------------------

# A snapshot of the notebook as the learner sees it, one entry per cell, in order.
SNAPSHOT_JS = """() => {
  const indicator = document.querySelector('.jp-Notebook-ExecutionIndicator');
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-Cell')].map(cell => {
    const outputs = [...cell.querySelectorAll('.jp-OutputArea-output')];
    return {
      code: cell.classList.contains('jp-CodeCell'),
      prompt: (cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
      // a folded cell (the setup cell) shows its first line instead of its input, and no prompt number
      folded: (cell.querySelector('.jp-InputPlaceholder .jp-PlaceholderText') || {}).textContent ?? null,
      outputs: outputs.length,
      stderr: outputs.filter(o => o.dataset.mimeType === 'application/vnd.jupyter.stderr').map(o => o.innerText),
      widgets: [...cell.querySelectorAll('%s')].map(o => ({
        visible: o.checkVisibility(),
        text: o.innerText.slice(0, 300),
        rendered: o.querySelector('.jupyter-widgets') !== null,
        failed: o.querySelector('.jupyter-widgets-error-widget') !== null,  // a view that could not be created
      })),
    };
  });
  // The status bar says 'Python 3 (ipykernel) | Idle' once the kernel is connected (the toolbar's
  // indicator already says idle while the status bar still says 'No Kernel | Initializing').
  const kernel = [...document.querySelectorAll('#jp-main-statusbar .jp-StatusBar-TextItem')]
    .map(e => e.textContent).find(t => t.includes(' | ')) || '';
  const ready = !kernel.startsWith('No Kernel') && kernel.endsWith('| Idle');
  const dialog = document.querySelector('.jp-Dialog');
  return {status: indicator && ready ? indicator.dataset.status : `${indicator ? indicator.dataset.status : '?'}, ${kernel || 'no kernel shown'}`, cells,
          dialog: dialog ? dialog.innerText.replace(/\s+/g, ' ').trim() : '',
          text: (document.querySelector('.jp-Notebook') || document.body).innerText};
}""" % WIDGET_OUTPUT

# What a widget shows (not its controls): output areas, HTML values, images.
SHOWN_JS = """out => [...out.querySelectorAll('.widget-output, .widget-html-content, .widget-image')]
  .map(e => e.outerHTML).join('\\n')"""

NOT_RENDERED = ("Loading widget", "Error displaying widget", "Click to show javascript error")
ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception)\b.*$", re.M)


@dataclass
class Outcome:
    notebook: str
    problems: list = field(default_factory=list)
    seconds: float = 0.0
    responded: str = ""
    screenshot: str = ""


class Step:
    """Names the step a failure happened in, so that a timeout or a crash says where it was."""

    def __init__(self):
        self.name = "starting"

    def __call__(self, name: str) -> None:
        self.name = name


async def _snapshot(page):
    try:  # page.evaluate has no deadline of its own: a hung page would hang the test
        return await asyncio.wait_for(page.evaluate(SNAPSHOT_JS), 60)
    except asyncio.TimeoutError:
        raise TimeoutError("the page did not answer for 60 s (hung?)") from None


async def _poll(page, until, timeout: float, what: str, interval: float = 0.5):
    """Snapshot the page until ``until(snapshot)`` holds; a clear error after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        snap = await _snapshot(page)
        if snap["dialog"]:  # "Kernel Restarting: the kernel appears to have died", "Select Kernel", ...
            raise RuntimeError(f"JupyterLab shows a dialog: {snap['dialog'][:300]!r}")
        if re.search(r"dead|restarting", snap["status"], re.I):
            raise RuntimeError(f"the kernel died (status: {snap['status']})")
        if until(snap):
            return snap
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s (kernel status: {snap['status']}, "
                               f"prompts: {_prompt_summary(snap)})")
        await asyncio.sleep(interval)


def _prompt_summary(snap) -> str:
    prompts = [c["prompt"].strip() for c in snap["cells"] if c["code"]]
    done = sum(bool(re.match(r"\[\d+\]", p)) for p in prompts)
    running = sum("*" in p for p in prompts)
    return f"{done} of {len(prompts)} code cells ran, {running} waiting or running"


def _finished(snap) -> bool:
    prompts = [c["prompt"] for c in snap["cells"] if c["code"]]
    return (snap["status"] == "idle" and not any("*" in p for p in prompts)
            and any(re.search(r"\[\d+\]", p) for p in prompts))


async def _changed(page, out, before: str, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        now = await out.evaluate(SHOWN_JS)
        if now != before and now.strip():
            await asyncio.sleep(1)  # let an Output widget finish clearing and redrawing
            return True
    return False


async def _respond_to_input(page) -> str:
    """Move a slider or pick another value in each widget until what one shows changes; '' if none does."""
    outs = page.locator(f"{WIDGET_OUTPUT}:visible")  # not the closed (hidden) progress bars
    for i in range(await outs.count()):
        out = outs.nth(i)
        if not await out.is_visible() or await out.locator(".widget-output, .widget-html-content, .widget-image").count() == 0:
            continue
        await out.scroll_into_view_if_needed()
        handles = out.locator(".noUi-handle")
        for j in range(await handles.count()):
            handle = handles.nth(j)
            now, top = await handle.get_attribute("aria-valuenow"), await handle.get_attribute("aria-valuemax")
            key = "ArrowLeft" if now is not None and now == top else "ArrowRight"
            before = await out.evaluate(SHOWN_JS)
            await handle.focus()
            await handle.press(key)
            if await _changed(page, out, before):
                return f"slider {j + 1} of widget {i + 1} ({key}: value {now} -> {await handle.get_attribute('aria-valuenow')})"
        selects = out.locator("select")
        for j in range(await selects.count()):
            select = selects.nth(j)
            options = await select.locator("option").count()
            if options < 2:
                continue
            before = await out.evaluate(SHOWN_JS)
            current = await select.evaluate("s => s.selectedIndex")
            await select.select_option(index=(current + 1) % options)
            if await _changed(page, out, before):
                return f"drop-down {j + 1} of widget {i + 1}"
        toggles = out.locator(".widget-toggle-button:not(.mod-active), .widget-radio-box input:not(:checked)")
        if await toggles.count():
            before = await out.evaluate(SHOWN_JS)
            await toggles.first.click()
            if await _changed(page, out, before):
                return f"a toggle of widget {i + 1}"
    return ""


async def check_notebook(browser, lab: Lab, notebook: str, *, kernel_timeout: float = KERNEL_START_TIMEOUT,
                         run_timeout: float = RUN_TIMEOUT) -> Outcome:
    """Open ``notebook`` (a path under Lab's root), Run All Cells, and list what a learner would see wrong."""
    outcome, step, start = Outcome(notebook), Step(), time.monotonic()
    source = nbformat.read(lab.root / notebook, as_version=4)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(30_000)
    page = await context.new_page()
    crashed = []
    page.on("crash", lambda _: crashed.append(True))
    shot = ARTIFACTS / (notebook.replace("/", "__").removesuffix(".ipynb") + ".png")
    try:
        step("opening the notebook")
        workspace = re.sub(r"\W", "-", notebook)  # a workspace per page: no page restores another's tabs
        await page.goto(f"{lab.url}/lab/workspaces/{workspace}/tree/{notebook}?reset&token={lab.token}",
                        timeout=60_000)
        await page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=60_000)
        step("waiting for the kernel to start")
        await _poll(page, lambda s: s["status"] == "idle", kernel_timeout, "the kernel did not become idle")
        step("Run > Run All Cells")
        await page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
        await page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        step("running all cells")
        await _poll(page, lambda s: any("*" in c["prompt"] or re.search(r"\[\d+\]", c["prompt"]) for c in s["cells"]),
                    30, "Run All Cells did not start any cell")
        # Finished: the kernel idle, nothing waiting, twice in a row one second apart.
        while True:
            await _poll(page, _finished, max(1.0, run_timeout - (time.monotonic() - start)),
                        "the notebook did not finish running", interval=1)
            await asyncio.sleep(1)
            if _finished(await _snapshot(page)):
                break
        outcome.seconds = time.monotonic() - start
        step("waiting for the widgets to render")
        try:
            await _poll(page, lambda s: not any(w["visible"] and "Loading widget" in w["text"]
                                                for c in s["cells"] for w in c["widgets"]),
                        WIDGET_TIMEOUT, "widgets still loading")
        except TimeoutError:
            pass  # reported below, widget by widget
        step("moving a widget's control")
        outcome.responded = await _respond_to_input(page)
        await _poll(page, _finished, 60, "the kernel did not become idle after the widget's callback")
        step("looking at the outputs")
        snap = await _snapshot(page)
        outcome.problems += _problems(source, snap, notebook)
        if not outcome.responded:
            outcome.problems.append("no widget responded to input: moving a slider or picking another value "
                                    "changed nothing that a widget shows")
    except Exception as err:  # a timeout, a crashed page or browser: say where, and what Lab said
        what = "the page crashed" if crashed else f"{type(err).__name__}: {str(err).strip().splitlines()[0][:500]}"
        outcome.problems.append(f"while {step.name}: {what}\nThe end of JupyterLab's log:\n{lab.log_tail(12)}")
    finally:
        try:
            first_widget = page.locator(f"{WIDGET_OUTPUT}:visible").first
            if await first_widget.count():
                await first_widget.scroll_into_view_if_needed(timeout=5_000)
            await page.screenshot(path=str(shot), timeout=15_000)
            outcome.screenshot = str(shot.relative_to(ROOT))
        except Exception:
            pass
        try:
            await asyncio.wait_for(context.close(), 30)
        except Exception:
            pass
        try:
            await asyncio.to_thread(lab.shutdown_kernel, notebook)
        except Exception:
            pass
    if not outcome.seconds:
        outcome.seconds = time.monotonic() - start
    return outcome


def _problems(source, snap, notebook: str) -> list[str]:
    """What a learner would see wrong in the snapshot of a notebook that has run."""
    problems = []
    cells = snap["cells"]
    if len(cells) != len(source.cells):
        return [f"the page shows {len(cells)} cells, the notebook has {len(source.cells)}"]
    widgets = 0
    for number, (cell, shown) in enumerate(zip(source.cells, cells), start=1):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        lines = [line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")]
        where = f"cell {number} ({(lines or cell.source.splitlines())[0][:60]!r})"
        if cell.metadata.get("jupyter", {}).get("source_hidden"):  # folded: its title shows, its output says it ran
            if shown.get("folded") != cell.source.splitlines()[0]:
                problems.append(f"{where} should open folded under its first line, but shows {shown.get('folded')!r}")
            if not shown.get("outputs"):
                problems.append(f"{where} (folded) never ran: it shows no output")
        elif not re.search(r"\[\d+\]", shown["prompt"]):
            problems.append(f"{where} never ran (prompt {shown['prompt'].strip() or '[ ]'})")
        if "raises-exception" not in cell.metadata.get("tags", []):
            for text in shown["stderr"]:
                if ERROR_TEXT.search(text):
                    problems.append(f"{where} shows an error: {ERROR_TEXT.search(text).group(0)[:200]}\n"
                                    + "\n".join(text.strip().splitlines()[-4:]))
        for w in shown["widgets"]:
            if not w["visible"]:  # a closed widget (a finished progress bar) is hidden by JupyterLab
                continue
            widgets += 1
            bad = [t for t in NOT_RENDERED if t in w["text"]]
            if bad or w["failed"] or not w["rendered"]:
                problems.append(f"{where}: a widget did not render, the learner sees {w['text'].strip()[:120]!r}")
    if widgets == 0:
        problems.append("no widget is shown: every lesson has at least one")
    code = "\n".join(c.source for c in source.cells if c.cell_type == "code")
    if notebook.startswith("notebooks/"):  # what tests/test_exercise_notebooks.py asserts, which it leaves to this test
        if "utils.use(" in code and FALLBACK_NOTE not in snap["text"]:
            problems.append(f"the unfilled exercise notebook does not show the fallback note ({FALLBACK_NOTE!r})")
        if "utils.check(" in code and NOT_ATTEMPTED not in snap["text"]:
            problems.append(f"the checks of the unfilled notebook do not say {NOT_ATTEMPTED!r}")
        if QUICK_NOTE not in snap["text"]:
            problems.append(f"the unfilled notebook does not say that it runs in the {QUICK_NOTE!r}")
    return problems


async def run_notebooks(lab: Lab, notebooks: list[str], chromium: str, workers: int = WORKERS) -> dict:
    """Check ``notebooks`` in one browser, ``workers`` pages at a time: {notebook: Outcome}."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
                                           timeout=60_000)
        try:
            gate = asyncio.Semaphore(workers)

            async def one(notebook):
                async with gate:
                    try:
                        return await asyncio.wait_for(check_notebook(browser, lab, notebook), RUN_TIMEOUT + 300)
                    except Exception as err:  # a wait without a deadline would be a bug; still, no hang
                        return Outcome(notebook, [f"{type(err).__name__}: {err}"])

            return {o.notebook: o for o in await asyncio.gather(*(one(nb) for nb in notebooks))}
        finally:
            try:
                await asyncio.wait_for(browser.close(), 30)
            except Exception:
                pass


def copy_course(dest: Path, notebooks: list[str]) -> None:
    """Lay out ``dest`` like the repository (utils/ importable from the notebooks' folders), notebooks without outputs."""
    shutil.copytree(ROOT / "utils", dest / "utils", ignore=shutil.ignore_patterns("__pycache__"))
    for notebook in notebooks:
        nb = nbformat.read(ROOT / notebook, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.metadata.pop("widgets", None)
        nb.metadata.pop("jupytext", None)  # else Lab's autosave writes a paired .py next to the copy
        (dest / notebook).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest / notebook)


# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    try:
        import playwright  # noqa: F401
    except ImportError:
        _skip_or_fail("the browser test needs the playwright package (pip install -r requirements.txt)")
    path = _chromium()
    if not path:
        _skip_or_fail("Chromium is not installed (apt-get install chromium fonts-dejavu-core); "
                      "set COURSE_BROWSER_CHROMIUM to use another")
    return path


# The test's own test: a notebook whose first widget cannot render (its view class does not exist,
# as when a widget's front-end code is missing), then a working slider. The browser test must
# fail it, saying which widget did not render.
BROKEN_WIDGET = "selftest/broken_widget.ipynb"
BROKEN_WIDGET_CELLS = [
    """import ipywidgets as widgets
from traitlets import Unicode


class Broken(widgets.DOMWidget):
    _view_name = Unicode("NoSuchView").tag(sync=True)
    _view_module = Unicode("@jupyter-widgets/controls").tag(sync=True)
    _view_module_version = Unicode(widgets.__version__[:1] + ".0.0").tag(sync=True)


Broken()""",
    # a widget whose model the kernel never created
    "from IPython.display import display\n"
    "display({'application/vnd.jupyter.widget-view+json': {'model_id': 'f' * 32, 'version_major': 2, 'version_minor': 0}}, raw=True)",
    "widgets.interact(lambda n: print('n squared is', n * n), n=widgets.IntSlider(value=3, min=0, max=9));",
]


def _write_notebook(path: Path, cells: list[str], kernel: str = "python3") -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def outcomes(request, chromium):
    """Run every selected notebook in one JupyterLab and one browser, before the per-notebook asserts."""
    params = [item.callspec.params for item in request.session.items
              if getattr(item, "module", None) is request.module and hasattr(item, "callspec")]
    selected = [p["notebook"] for p in params if p.get("notebook") in (*LESSONS, BROKEN_WIDGET)]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="course-browser-"))
    threads = str(max(1, (os.cpu_count() or 1) // WORKERS))  # kernels side by side share the cores
    lab = Lab(tmp / "course", tmp / "lab", log=ARTIFACTS / "jupyterlab.log",
              env={"COURSE_QUICK": "1", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    try:
        copy_course(lab.root, [nb for nb in selected if nb != BROKEN_WIDGET])
        _write_notebook(lab.root / BROKEN_WIDGET, BROKEN_WIDGET_CELLS)
        lab.start()
        started = time.monotonic()
        results = asyncio.run(run_notebooks(lab, selected, chromium))
        print(f"\nbrowser test: {len(selected)} notebooks in {time.monotonic() - started:.0f} s, "
              f"{WORKERS} at a time")
        for o in results.values():
            verdict = "ok" if not o.problems else f"{len(o.problems)} problem(s)"
            if o.notebook == BROKEN_WIDGET:
                verdict += " (broken on purpose: the test's own test)"
            print(f"  {o.notebook}: {o.seconds:.0f} s, {verdict}; "
                  f"responded: {o.responded or '-'}; screenshot: {o.screenshot or '-'}")
        yield results
    finally:
        lab.stop()
        left = lab.leftovers()
        shutil.rmtree(tmp, ignore_errors=True)
        assert not left, f"processes of the browser test still running: {left}"


@pytest.mark.skipif(not LESSONS, reason="no lesson matches COURSE_BROWSER_LESSONS")
@pytest.mark.parametrize("notebook", LESSONS or ["none"])
def test_lesson_runs_in_jupyterlab(notebook, outcomes):
    outcome = outcomes[notebook]
    assert not outcome.problems, (f"{notebook} in JupyterLab ({outcome.screenshot or 'no screenshot'}):\n- "
                                  + "\n- ".join(outcome.problems))


@pytest.mark.parametrize("notebook", [BROKEN_WIDGET])
def test_a_widget_that_does_not_render_fails_the_test(notebook, outcomes):
    problems = outcomes[notebook].problems
    assert any(p.startswith("cell 1") and "did not render" in p and "javascript error" in p for p in problems), problems
    assert any(p.startswith("cell 2") and "did not render" in p and "widget" in p for p in problems), problems
    assert len(problems) == 2, f"only the two broken widgets should be reported: {problems}"
    assert "slider" in outcomes[notebook].responded


def test_a_port_already_taken_fails_clearly(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        lab = Lab(tmp_path / "root", tmp_path / "lab", port=taken.getsockname()[1], start_timeout=60)
        lab.root.mkdir()
        started = time.monotonic()
        with pytest.raises(LabError, match="already taken"):
            lab.start()
    assert time.monotonic() - started < 60
    assert lab.proc.poll() is not None and not lab.leftovers()


def test_a_slow_kernel_a_crashed_browser_and_a_dead_kernel_fail_clearly(tmp_path, chromium):
    """A kernel that never answers, a browser that crashes, a kernel that dies: a clear failure, not a hang."""
    from playwright.async_api import async_playwright

    spec = tmp_path / "data" / "kernels" / "slow"  # a kernel that takes ten minutes to start
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", "import time; time.sleep(600)", "{connection_file}"],
        "display_name": "Slow to start", "language": "python"}))
    lab = Lab(tmp_path / "root", tmp_path / "lab", env={"JUPYTER_PATH": str(tmp_path / "data")})
    SLOW, DIES = "selftest/slow_kernel.ipynb", "selftest/kernel_dies.ipynb"
    _write_notebook(lab.root / SLOW, ["1 + 1"], kernel="slow")
    _write_notebook(lab.root / DIES, ["import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "1 + 1"])

    async def scenario():
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, timeout=60_000)
            slow = await check_notebook(browser, lab, SLOW, kernel_timeout=10)
            running = asyncio.create_task(check_notebook(browser, lab, SLOW, kernel_timeout=300))
            for _ in range(120):  # until the page has opened the notebook and asked for its kernel
                await asyncio.sleep(1)
                if any(s["path"] == SLOW for s in await asyncio.to_thread(lab.api, "GET", "/api/sessions")):
                    break
            await asyncio.sleep(1)
            cdp = await browser.new_browser_cdp_session()
            try:
                await cdp.send("Browser.crash")
            except Exception:
                pass  # the browser died before it could answer
            crashed = await asyncio.wait_for(running, 60)
            browser = await pw.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, timeout=60_000)
            died = await check_notebook(browser, lab, DIES, run_timeout=300)
            try:
                await asyncio.wait_for(browser.close(), 10)
            except Exception:
                pass
            return slow, crashed, died

    try:
        lab.start()
        started = time.monotonic()
        slow, crashed, died = asyncio.run(scenario())
        assert time.monotonic() - started < 300, "the failures took too long to show"
    finally:
        lab.stop()
    assert slow.problems and "while waiting for the kernel to start" in slow.problems[0], slow.problems
    assert "did not become idle: not within 10 s" in slow.problems[0], slow.problems
    assert crashed.problems and re.match(r"while (opening the notebook|waiting for the kernel to start)",
                                         crashed.problems[0]), crashed.problems
    assert re.search(r"crash|closed", crashed.problems[0], re.I), crashed.problems
    assert died.problems and "while running all cells" in died.problems[0], died.problems
    assert re.search(r"died|restarting", died.problems[0], re.I), died.problems
    assert not lab.leftovers(), "the slow kernel was left running"


def test_an_unfilled_notebook_must_show_what_the_exercise_test_asserts():
    """The notes that tests/test_exercise_notebooks.py leaves to this test are looked for (no browser needed)."""
    source = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("utils.check('03.1', f)\nf = utils.use('03.1', f)")])
    shown = {"code": True, "prompt": "[1]:", "stderr": [], "widgets": [{"visible": True, "text": "", "rendered": True, "failed": False}]}
    full = {"cells": [shown], "text": f"… {NOT_ATTEMPTED}. ✔ {FALLBACK_NOTE}. {QUICK_NOTE}: smaller training budgets"}
    assert _problems(source, full, "notebooks/03_x.ipynb") == []
    for missing in (NOT_ATTEMPTED, FALLBACK_NOTE, QUICK_NOTE):
        snap = {**full, "text": full["text"].replace(missing, "")}
        problems = _problems(source, snap, "notebooks/03_x.ipynb")
        assert len(problems) == 1 and missing in problems[0], (missing, problems)
    assert _problems(source, {**full, "text": ""}, "solutions/03_x.ipynb") == []  # solutions call the checks filled
