"""The course's website (``python -m tools.build_site``): built from the stored outputs, checked in a browser.

The site is built once into a temporary folder (Sphinx with MyST-NB, execution off; a Sphinx
warning fails the build), served on 127.0.0.1, and every page is opened in headless Chromium with
every request outside the site refused, as a reader without network would see it. A page fails on:

* maths left unrendered (a ``.math`` element MathJax did not typeset, a MathJax error, or TeX
  delimiters such as ``$x$`` or ``\\(`` left in the prose);
* an image that did not load;
* an internal link to a page, file or ``#anchor`` that does not exist;
* a console error or an uncaught exception, a failed request, or a request outside the site.

* what a reader should never see: a markdown table left as raw ``| a | b |`` text, an authoring
  marker (``### BEGIN SOLUTION``, ``### END SOLUTION``, ``# NBVAL_...``), a progress-bar remnant
  (``88%|████`` or a ``<progress>`` bar), a stack trace or a warning;
* a code or output block, table or equation a reader must scroll sideways at 1366 px, and a page
  wider than a 390 px phone;
* a landing page without its "Start with lesson 01" button.

Each page is seen at 1366 x 900 and then at 390 x 844; both screenshots go to
``test-artifacts/site/`` (``index.png``, ``index-phone.png``, ...). The lesson pages must also
carry their Colab and Binder links, a box per exercise with its download, Colab and Binder
buttons, and at least the figures the notebook stored. ``test_the_checks_catch_each_fault``
proves the checks fail on a page that has each of these faults. Without Chromium the browser
tests are skipped, except under ``CI``.

Two tests read the stored lessons: their code is formatted (``python -m tools.format_lessons``),
and no finished progress bar left anything but its summary line (``utils/progress.py``).
"""
from __future__ import annotations

import asyncio
import functools
import html
import http.server
import re
import shutil
import threading
import time
import urllib.parse
from pathlib import Path

import nbformat
import pytest
from test_browser import CHROMIUM_FLAGS, _chromium, _skip_or_fail

from tools import build_site
from grading.ids import CHECK_CALL
from tools.retarget import binder_url, colab_url

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "site"
LESSONS = [p.stem for p in build_site.lessons()]
PAGES = ["index.html", *[f"lessons/{s}.html" for s in LESSONS], "search.html", "genindex.html"]
PAGE_TIMEOUT = 60  # s: load a page and typeset its maths
DESKTOP, PHONE = {"width": 1366, "height": 900}, {"width": 390, "height": 844}

# Run in the page once it has loaded: what a reader would see wrong, apart from the console.
INSPECT_JS = r"""async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const math = [...document.querySelectorAll('.math')];
  const unrendered = math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.trim().slice(0, 80));
  const mathErrors = [...document.querySelectorAll('mjx-merror')].map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80));
  const prose = (document.querySelector('main') || document.body).cloneNode(true);
  prose.querySelectorAll('pre, code, script, style, mjx-container, textarea, .highlight').forEach(e => e.remove());
  const raw = prose.textContent.match(/\$\$?[^$\s][^$\n]{0,80}?\$|\\\(|\\\[|\\begin\{/g) || [];
  const images = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  const main = document.querySelector('main') || document.body;
  const text = main.innerText;
  const short = e => (e.innerText || e.textContent).trim().replace(/\s+/g, ' ').slice(0, 80);
  // a markdown table that was not rendered: its |---|---| line, as text outside code
  const rawTables = [...main.querySelectorAll('p, li, td, .cell_output pre')].filter(
    e => /\|\s*:?-{3,}:?\s*\|/.test(e.textContent)).map(short);
  const markers = (text.match(/### (BEGIN|END) SOLUTION|# NBVAL_[A-Z_]+/g) || []);
  const progress = [...(text.match(/\d+%\|[^\n|]*\||\[\d\d:\d\d<[\d:?]+,/g) || []),
                    ...[...main.querySelectorAll('progress, .widget-hprogress')].map(() => '<progress> bar')];
  const errors = [...main.querySelectorAll('.output.traceback, .output.stderr, .output.error')].map(short);
  // blocks a reader would have to scroll sideways (the page itself is checked at phone width)
  // (a block that scrolls: a scroll container, or an element that lets its content spill out)
  const wide = [...main.querySelectorAll('*')].filter(e => e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0 &&
    (['auto', 'scroll'].includes(getComputedStyle(e).overflowX) || ['PRE', 'TABLE'].includes(e.tagName))).map(
    e => `${e.tagName.toLowerCase()} ${e.scrollWidth - e.clientWidth} px too wide: ${short(e)}`);
  const pre = main.querySelector('.cell_input pre');
  let codeColumn = null;
  if (pre) {
    const probe = document.createElement('span'); probe.textContent = 'x'.repeat(100); probe.style.whiteSpace = 'pre';
    pre.appendChild(probe);
    const cs = getComputedStyle(pre);
    codeColumn = (pre.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight)) / (probe.getBoundingClientRect().width / 100);
    probe.remove();
  }
  return {mathCount: math.length, typeset: math.length - unrendered.length, unrendered, mathErrors, raw,
          images, imageCount: document.images.length, links, rawTables, markers, progress, errors, wide, codeColumn,
          start: [...document.querySelectorAll('a.course-start')].map(a => a.href),
          exercises: [...document.querySelectorAll('.admonition.course-exercise')].map(b => ({
            title: b.querySelector('.admonition-title').textContent,
            links: [...b.querySelectorAll('a[href]')].map(a => a.href)}))};
}"""

PAGE_WIDTH_JS = "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"


def reader_problems(seen: dict, page: str) -> list[str]:
    """What a reader should not see on ``page``, from what INSPECT_JS saw and the page width on a phone."""
    problems = [f"a markdown table shown as text: {t!r}" for t in seen["rawTables"]]
    problems += [f"an authoring marker shown: {m!r}" for m in dict.fromkeys(seen["markers"])]
    problems += [f"a progress-bar remnant: {p!r}" for p in dict.fromkeys(seen["progress"])]
    problems += [f"a stack trace or warning in an output: {e!r}" for e in seen["errors"]]
    problems += [f"must be scrolled sideways at {DESKTOP['width']} px: {w}" for w in seen["wide"]]
    if seen.get("phoneWidth", 0) > PHONE["width"]:
        problems.append(f"the page is {seen['phoneWidth']} px wide on a {PHONE['width']} px phone")
    if page.rsplit("/", 1)[-1] == "index.html" and not any(re.search(r"/lessons/01_\w+\.html$", h) for h in seen["start"]):
        problems.append("the landing page has no 'Start with lesson 01' button (a.course-start to lesson 01)")
    return problems


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Server:
    """A static file server for ``folder`` on 127.0.0.1 and a free port, as any static host would serve it."""

    def __init__(self, folder: Path):
        handler = functools.partial(QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _ids(html_file: Path, cache: dict) -> set:
    if html_file not in cache:
        text = html_file.read_text(errors="replace") if html_file.is_file() else ""
        cache[html_file] = set(re.findall(r"""\bid=["']([^"']+)["']""", text))
    return cache[html_file]


def broken_links(links: list[str], base_url: str, folder: Path, cache: dict) -> list[str]:
    """The internal links (same origin) whose file, or ``#anchor`` in it, does not exist."""
    broken = []
    for link in links:
        if not link.startswith(base_url):
            continue
        parsed = urllib.parse.urlsplit(link)
        rel = urllib.parse.unquote(parsed.path[len(urllib.parse.urlsplit(base_url).path):])
        target = folder / rel
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{rel} (no such file)")
        elif parsed.fragment and target.suffix == ".html" and urllib.parse.unquote(parsed.fragment) not in _ids(target, cache):
            broken.append(f"{rel}#{parsed.fragment} (no such anchor)")
    return sorted(set(broken))


async def inspect_pages(folder: Path, pages: list[str], chromium: str, shots: Path | None = None) -> dict:
    """Open each page of the static site ``folder``: {page: {"problems": [...], ...what INSPECT_JS saw}}."""
    from playwright.async_api import async_playwright

    results, cache = {}, {}
    with Server(folder) as server:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS,
                                               timeout=60_000)
            try:
                async def one(page_name):
                    context = await browser.new_context(viewport=DESKTOP)
                    page = await context.new_page()
                    problems = []
                    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text[:300]}")
                            if m.type == "error" else None)
                    page.on("pageerror", lambda e: problems.append(f"uncaught exception: {str(e)[:300]}"))
                    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url[:200]}")
                            if r.url.startswith(server.url) else None)
                    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url[:200]}")
                            if r.status >= 400 else None)

                    async def route(r):
                        if r.request.url.startswith(server.url) or r.request.url.startswith("data:"):
                            await r.continue_()
                        else:
                            problems.append(f"a request outside the site: {r.request.url[:200]}")
                            await r.abort()

                    await page.route("**/*", route)
                    seen = {}
                    try:
                        await page.goto(server.url + page_name, wait_until="load", timeout=PAGE_TIMEOUT * 1000)
                        seen = await asyncio.wait_for(page.evaluate(INSPECT_JS), PAGE_TIMEOUT)
                        await page.wait_for_timeout(200)  # late console messages
                        shot = shots / page_name.replace("/", "_").removesuffix(".html") if shots else None
                        if shot:
                            await page.screenshot(path=f"{shot}.png", timeout=15_000)
                        await page.set_viewport_size(PHONE)
                        await page.wait_for_timeout(400)  # the layout for the narrow screen (the sidebar slides out)
                        seen["phoneWidth"] = await page.evaluate(PAGE_WIDTH_JS)
                        if shot:
                            await page.screenshot(path=f"{shot}-phone.png", timeout=15_000)
                    except Exception as err:
                        problems.append(f"{type(err).__name__}: {str(err).splitlines()[0][:300]}")
                    finally:
                        await context.close()
                    if seen:
                        problems += [f"maths not rendered: {m!r}" for m in seen["unrendered"]]
                        problems += [f"maths error: {m!r}" for m in seen["mathErrors"]]
                        problems += [f"TeX left in the text: {m!r}" for m in seen["raw"]]
                        problems += [f"image not loaded: {src}" for src in seen["images"]]
                        problems += [f"broken link: {b}" for b in broken_links(seen["links"], server.url, folder, cache)]
                        problems += reader_problems(seen, page_name)
                    results[page_name] = {**seen, "problems": list(dict.fromkeys(problems)), "base": server.url}

                gate = asyncio.Semaphore(3)

                async def gated(name):
                    async with gate:
                        await one(name)

                await asyncio.gather(*(gated(p) for p in pages))
            finally:
                await browser.close()
    return results


# --------------------------------------------------------------------------------------------
# Fixtures: one build, one browser pass
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    started = time.monotonic()
    html_dir = build_site.build(tmp_path_factory.mktemp("site"))
    print(f"\nsite built in {time.monotonic() - started:.1f} s")
    return html_dir


@pytest.fixture(scope="module")
def chromium():
    try:
        import playwright  # noqa: F401
    except ImportError:
        _skip_or_fail("the site's browser test needs the playwright package (pip install -r requirements.txt)")
    path = _chromium()
    if not path:
        _skip_or_fail("Chromium is not installed (apt-get install chromium fonts-dejavu-core)")
    return path


@pytest.fixture(scope="module")
def seen(site, chromium):
    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    started = time.monotonic()
    results = asyncio.run(inspect_pages(site, PAGES, chromium, ARTIFACTS))
    print(f"\nsite: {len(PAGES)} pages checked in Chromium in {time.monotonic() - started:.1f} s; screenshots in "
          f"{ARTIFACTS.relative_to(ROOT)}/")
    return results


# --------------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------------


def test_every_page_is_built_and_needs_no_network(site):
    for page in PAGES:
        assert (site / page).is_file(), f"{page} was not built"
    remote = re.compile(r"""<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""", re.I)
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert not remote.search(text), f"{page.relative_to(site)} loads {remote.search(text).group(0)!r} from the network"
        assert "application/vnd.jupyter.widget-state+json" not in text, f"{page.name}: widget state (needs a CDN)"
    assert (site / "_static" / "mathjax" / "tex-chtml.js").is_file(), "MathJax is not in the site"


def test_landing_page_lists_the_lessons_in_order(site):
    index = (site / "index.html").read_text()
    main = index[index.index("<main"):]
    order = [m for m in re.findall(r'href="lessons/(\d\d_[a-z0-9_]+)\.html"', main)]
    assert order, "the landing page links no lesson"
    firsts = list(dict.fromkeys(order))
    assert firsts == LESSONS, f"the course map and table of contents should list {LESSONS} in order, not {firsts}"
    for stem in LESSONS:
        title = build_site.lesson_info(nbformat.read(ROOT / "solutions" / f"{stem}.ipynb", 4))["short"]
        text = html.unescape(re.sub(r"<[^>]+>", "", main)).replace("\u2019", "'")  # MyST's typographic quotes
        assert title.strip()[:20] in text, f"the map lacks {stem}'s title {title!r}"


def test_landing_page_says_where_to_start_and_what_each_lesson_builds(site):
    index = (site / "index.html").read_text()
    main = html.unescape(index[index.index("<main"):])
    start = re.findall(r'<a class="[^"]*course-start[^"]*" href="([^"]+)"', main)
    assert start == [f"lessons/{LESSONS[0]}.html"], f"one start button, to the first lesson: {start}"
    table = build_site.readme_lessons()
    assert set(LESSONS) <= set(table), f"the README's lesson table lacks {sorted(set(LESSONS) - set(table))}"
    cards = main.split('class="course-card docutils container"')[1:]
    assert len(cards) == len(LESSONS), f"{len(cards)} cards for {len(LESSONS)} lessons"
    for stem, card in zip(LESSONS, cards):
        words = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", card)).replace("\u2019", "'")
        for part in ("question", "build"):
            plain = re.sub(r"[`*]", "", table[stem][part]).replace("\u2019", "'")
            assert plain[:40] in words, f"{stem}'s card lacks its {part} {plain!r}"
        ipynb = f"notebooks/{stem}.ipynb"
        assert colab_url(ipynb) in card and binder_url(ipynb) in card, f"{stem}'s card lacks its Colab or Binder link"


@pytest.mark.parametrize("stem", LESSONS)
def test_lesson_page_has_launch_links_exercises_and_figures(stem, site):
    page = (site / "lessons" / f"{stem}.html").read_text()
    exercise_nb = f"notebooks/{stem}.ipynb"
    for url in (colab_url(exercise_nb), binder_url(exercise_nb)):
        assert f'href="{url.replace("&", "&amp;")}"' in page, f"no launch link {url}"
    nb = nbformat.read(ROOT / "solutions" / f"{stem}.ipynb", 4)
    ids = sorted(set(CHECK_CALL.findall("\n".join(c.source for c in nb.cells if c.cell_type == "code"))))
    boxes = re.findall(r'class="[^"]*\bcourse-exercise\b[^"]*">\s*<p class="admonition-title">Exercise (\d\d\.\d+)', page)
    solved = [c for c in nb.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]
    assert len(boxes) == len(solved) and set(boxes) <= set(ids), f"exercise boxes {boxes}, exercises {ids}"
    downloads = set(re.findall(r'href="\.\./(_downloads/[0-9a-f]+/' + stem + r'\.ipynb)"', page))
    assert len(downloads) == 1, f"the exercise boxes should link the exercise notebook: {downloads}"
    assert (site / downloads.pop()).read_bytes() == (ROOT / exercise_nb).read_bytes()
    for box in re.split(r'<div class="course-exercise admonition">', page)[1:]:  # its three buttons
        box = box[:box.index("</div>")]
        buttons = re.findall(r'<a class="course-button reference [^"]*"[^>]*href="([^"]+)"', box)
        assert len(buttons) == 3 and buttons[0].endswith(f"/{stem}.ipynb"), buttons
        assert buttons[1:] == [colab_url(exercise_nb), binder_url(exercise_nb).replace("&", "&amp;")], buttons
    folded = re.findall(r'<details class="[^"]*\bhide\b[^"]*">(.*?)</details>', page, re.S)
    assert any("fetch_course" in f for f in folded) and page.count("fetch_course") == sum(f.count("fetch_course") for f in folded), \
        "the setup cell should be folded (a closed <details>), its code shown nowhere else"
    stored = sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
    shown = len(re.findall(r'<img[^>]+src="\.\./_images/', page))
    assert shown >= stored, f"{stored} figures stored in the notebook, {shown} on the page"


# --------------------------------------------------------------------------------------------
# In the browser
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_in_the_browser(page, seen):
    result = seen[page]
    assert not result["problems"], f"{page} ({ARTIFACTS.relative_to(ROOT)}):\n- " + "\n- ".join(result["problems"])


@pytest.mark.parametrize("stem", LESSONS)
def test_lesson_maths_is_typeset(stem, seen):
    result = seen[f"lessons/{stem}.html"]
    nb = nbformat.read(ROOT / "solutions" / f"{stem}.ipynb", 4)
    if any("$" in c.source for c in nb.cells if c.cell_type == "markdown"):
        assert result["mathCount"] > 0 and result["typeset"] == result["mathCount"], result


def test_code_column_holds_the_formatted_line_length(seen):
    """The formatter's line length (pyproject.toml) fits the code column at 1366 px, measured in the browser."""
    from tools.format_lessons import LINE_LENGTH

    columns = {stem: seen[f"lessons/{stem}.html"]["codeColumn"] for stem in LESSONS}
    assert all(c and c >= LINE_LENGTH for c in columns.values()), f"characters per code line at 1366 px: {columns}"


def test_lessons_code_is_formatted():
    """Every lesson's code cells are as ``ruff format`` (pyproject.toml) writes them."""
    from tools.format_lessons import format_lessons

    changed, _ = format_lessons(check=True)
    assert not changed, "not formatted (python -m tools.format_lessons): " + ", ".join(p.name for p in changed)


def test_the_formatter_never_joins_a_marker_to_its_reason():
    """A long reason under ``# NBVAL_IGNORE_OUTPUT`` is rewrapped, the marker stays alone (nbval reads
    only a whole-line marker); solution delimiters too."""
    from tools.format_lessons import comments_on_their_own_lines

    reason = "# (which tokens a trained model writes can change with the CPU: the cell asserts what it shows)"
    source = f"# NBVAL_IGNORE_OUTPUT\n{reason}\nx = 1\n    ### BEGIN SOLUTION\n    ### and a comment\n"
    out = comments_on_their_own_lines(source, limit=60).split("\n")
    assert out[0] == "# NBVAL_IGNORE_OUTPUT" and len(out[1]) <= 60 and out[1].startswith("# (which"), out
    assert "    ### BEGIN SOLUTION" in out and "    ### and a comment" in out, out


def progress_remnants(nb) -> list[str]:
    """What a finished progress bar left in a stored notebook: tqdm's text, a widget bar, a carriage-return stream."""
    state = nb.metadata.get("widgets", {}).get(build_site.WIDGET_STATE, {}).get("state", {})
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text = out.get("text", "") + data.get("text/plain", "") + data.get("text/html", "")
            view = data.get(build_site.WIDGET_VIEW)
            model = state.get(view["model_id"], {}) if view else {}
            kids = [state.get(c.removeprefix("IPY_MODEL_"), {}).get("model_name") for c in model.get("state", {}).get("children", [])]
            if re.search(r"\d+%\|[^|\n]*\||it/s\]|s/it\]|<progress", text) or "\r" in text or "FloatProgressModel" in kids:
                found.append(f"cell {i}: {text.strip()[:80]!r}")
    return found


@pytest.mark.parametrize("stem", LESSONS)
def test_solution_notebook_has_no_progress_bar_remnant(stem):
    found = progress_remnants(nbformat.read(ROOT / "solutions" / f"{stem}.ipynb", 4))
    assert not found, f"{stem}: a finished loop should leave one summary line (utils.progress), not:\n" + "\n".join(found)


def test_the_checks_catch_each_fault(tmp_path, site, chromium):
    """A page with unrendered maths, a missing image, broken links, a console error and a remote request fails."""
    (tmp_path / "_static").symlink_to(site / "_static", target_is_directory=True)
    (tmp_path / "ok.html").write_text('<html><body><main><p id="here">fine</p></main></body></html>')
    (tmp_path / "bad.html").write_text("""<!DOCTYPE html><html><head><meta charset="utf-8">
<script>window.MathJax = {tex: {inlineMath: [['\\\\(', '\\\\)']]}, options: {processHtmlClass: 'math'}};</script>
<script defer src="_static/mathjax/tex-chtml.js"></script></head><body><main>
<p>good <span class="math notranslate nohighlight">\\(x^2\\)</span>, bad <span class="math notranslate">\\(\\frac{1}\\)</span></p>
<p>raw dollars: $q k^T$ here</p>
<div class="math notranslate">plain words, no delimiters</div>
<img src="missing.png" alt="missing"><img src="https://example.org/remote.png" alt="remote">
<a href="nowhere.html">a</a> <a href="ok.html#here">b</a> <a href="ok.html#gone">c</a> <a href="https://example.org/">external</a>
<script>console.error("boom"); setTimeout(() => { throw new Error("late"); }, 0);</script>
<p>| layer | cost |
|---|---|
| attention | n^2 |</p>
<pre>### BEGIN SOLUTION
x = 1  # NBVAL_IGNORE_OUTPUT</pre>
<div class="cell_output"><pre>timing:  88%|████████▊ | 7/8 [00:01&lt;00:00,  6.43it/s]</pre></div>
<div class="output stderr"><pre>UserWarning: something</pre></div>
<div style="width: 600px"><pre style="overflow-x: auto">y = 1; z = y + 1; z = y + 1; z = y + 1; z = y + 1; z = y + 1; z = y + 1; z = y + 1; z = y + 1; z = y + 1; z = y + 1; z = y + 1; z = y + 1; print(z)</pre></div>
<div style="width: 600px">a page wider than a phone</div>
</main></body></html>""")
    (tmp_path / "index.html").write_text('<html><body><main><p>a landing page without its button: '
                                         '<a href="ok.html">lesson 01</a></p></main></body></html>')
    problems = asyncio.run(inspect_pages(tmp_path, ["bad.html", "ok.html", "index.html"], chromium))
    bad, ok = problems["bad.html"]["problems"], problems["ok.html"]["problems"]
    assert problems["index.html"]["problems"] == [
        "the landing page has no 'Start with lesson 01' button (a.course-start to lesson 01)"]
    text = "\n".join(bad)
    assert not ok, ok
    assert "maths error: 'Missing argument for" in text, bad  # a TeX error: \frac{1} lacks its denominator
    assert "maths not rendered: 'plain words" in text, bad  # a .math MathJax did not typeset
    assert "TeX left in the text: '$q k^T$'" in text, bad
    assert "image not loaded: missing.png" in text and "HTTP 404" in text, bad
    assert "a request outside the site: https://example.org/remote.png" in text, bad
    assert "broken link: nowhere.html (no such file)" in text and "broken link: ok.html#gone (no such anchor)" in text, bad
    assert "ok.html#here" not in text and "example.org/ " not in text, bad
    assert "console error: boom" in text and "uncaught exception: late" in text, bad
    assert "a markdown table shown as text: '| layer | cost |" in text, bad
    assert "an authoring marker shown: '### BEGIN SOLUTION'" in text, bad
    assert "an authoring marker shown: '# NBVAL_IGNORE_OUTPUT'" in text, bad
    assert "a progress-bar remnant: '88%|████████▊ |'" in text, bad
    assert "a stack trace or warning in an output: 'UserWarning: something'" in text, bad
    assert re.search(r"must be scrolled sideways at 1366 px: pre \d+ px too wide: y = 1; z", text), bad
    assert re.search(r"the page is \d+ px wide on a 390 px phone", text), bad
