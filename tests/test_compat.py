"""tools/compat.py without installing anything: its stacks lie where they say, its version checks
(utils/versions.py) judge versions as the README states, and its record is merged and written truthfully."""
import copy
import json
import runpy
from pathlib import Path

import nbformat
import pytest

from tools import compat

ROOT = Path(__file__).resolve().parent.parent
VERSIONS = runpy.run_path(str(ROOT / "utils" / "versions.py"))  # as the setup cell loads it: by path
SUPPORTED, status, parse = VERSIONS["SUPPORTED"], VERSIONS["status"], VERSIONS["parse"]


def _pin(spec: str) -> str:
    assert spec.startswith("=="), spec
    return spec[2:].rstrip("*").rstrip(".")


def test_version_parsing_and_the_range_comparison():
    assert parse("2.11.0+cu128") == (2, 11, 0) and parse("9.0.0rc1") == (9, 0, 0) and parse("3.12") == (3, 12)
    with pytest.raises(ValueError):
        parse("latest")
    assert status("torch", "2.10.0") == "ok"  # the oldest is in the range
    assert status("torch", "2.9.1") == "old"
    assert status("torch", "2.14.9") == "ok"  # any release of the newest series
    assert status("torch", "2.15.0") == "new"
    assert status("torch", "2.11.0+cu128") == "ok"  # a local build tag changes nothing
    assert status("ipython", "7.33.0") == "old" and status("ipython", "99.0") == "ok"  # no upper limit
    assert status("ipywidgets", "8.9.0") == "ok" and status("ipywidgets", "9.0.0") == "new"
    assert status("numpy", None) == "missing"


def test_messages_say_what_breaks_and_what_to_do():
    ok = {name: oldest for name, (oldest, _, _) in SUPPORTED.items()}
    assert VERSIONS["problems"](ok, colab=True) == []
    old = {**ok, "torch": "2.4.1", "ipywidgets": None}
    messages = VERSIONS["problems"](old, colab=True)
    assert len(messages) == 2
    torch_msg = next(m for m in messages if m.startswith("⚠️ torch"))
    assert "older than 2.10" in torch_msg and SUPPORTED["torch"][2] in torch_msg
    assert '!pip install "torch>=2.10"' in torch_msg and "Restart session" in torch_msg
    assert any("ipywidgets is not installed" in m for m in messages)
    local = VERSIONS["problems"]({**ok, "numpy": "2.9.0"}, colab=False)
    assert local and local[0].startswith("ℹ️ numpy 2.9.0 is newer") and 'pip install "numpy<2.5"' in local[0]
    assert "!" not in local[0].split("meanwhile")[1] and "Restart" not in local[0]


def test_the_oldest_stack_is_the_range_minimum():
    oldest = compat.stacks()["oldest"]["pins"]
    for name, (lowest, _, _) in SUPPORTED.items():
        if name == "python":
            continue
        version = _pin(oldest[name])
        assert status(name, version) == "ok", (name, version)
        assert parse(version)[:len(parse(lowest))] == parse(lowest), f"the oldest stack does not test {name} {lowest}"


@pytest.mark.parametrize("stack", ["colab", "oldest", "binder", "pinned"])
def test_every_pinned_stack_lies_in_the_range(stack):
    pins = compat.stacks()[stack]["pins"]
    for name in compat.LIBRARIES:
        if name in pins and pins[name]:
            assert status(name, _pin(pins[name])) == "ok", f"{stack}: {name} {pins[name]} is outside utils/versions.py"


def test_the_colab_stack_is_colabs_published_runtime():
    colab = {n: _pin(s) for n, s in compat.stacks()["colab"]["pins"].items()}
    # googlecolab/backend-info pip-freeze.gpu.txt (commit 03a89033), as compat.md cites it
    assert colab["torch"] == "2.11.0" and colab["numpy"] == "2.0.2" and colab["matplotlib"] == "3.10.0"
    assert colab["ipywidgets"] == "7.7.1" and colab["ipython"] == "7.34.0" and colab["ipykernel"] == "6.17.1"
    for name, version in colab.items():
        assert f"`{name}=={version}" in compat.SOURCES, f"compat.md does not cite Colab's {name}=={version}"
    # the IPython/matplotlib-inline trap (shared/JUPYTER-TESTING.md): a stack pins IPython with its matplotlib-inline
    for stack in ("colab", "oldest"):
        assert {"ipython", "matplotlib-inline", "ipykernel"} <= set(compat.stacks()[stack]["pins"])


def test_binder_stack_follows_binder_environment(tmp_path):
    env = tmp_path / "environment.yml"
    env.write_text("dependencies:\n  - python=3.11\n  - pytorch=2.13.0=cpu_*\n  - matplotlib-base=3.11.2\n"
                   "  - ipywidgets=8.1  # a series\n  - pip\n")
    assert compat.binder_pins(env) == {"torch": "==2.13.0", "matplotlib": "==3.11.2", "ipywidgets": "==8.1.*"}
    real = compat.binder_pins()
    assert real["torch"] == "==2.13.0", "Binder's PyTorch must be the version compat.md shows exists on conda-forge"
    assert compat.requirements("binder")[:1] == ["torch==2.13.0"]
    assert not [r for r in compat.requirements("binder") if r.startswith("jupyterlab")]


def test_newest_stack_pins_nothing_and_pinned_is_requirements_txt():
    assert all(spec == "" for spec in compat.stacks()["newest"]["pins"].values())
    pinned = compat.stacks()["pinned"]["pins"]
    assert pinned["torch"] == "==2.13.0" and "jupyterlab" not in pinned


def test_lessons_are_found_by_glob():
    found = compat.lessons()
    assert found == sorted(p.name[:2] for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")) and "03" in found
    assert compat.lessons(["03", "04"]) == ["03", "04"]


def _nb(*outputs, tags=()):
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    cell.metadata["tags"] = list(tags)
    return nbformat.v4.new_notebook(cells=[cell])


def _claim_output(holds: bool, statement: str, *, quick: bool) -> str:
    """What utils.claim prints for a claim that needs training, in the quick setting or not."""
    import contextlib
    import io

    from utils import runtime

    saved, runtime.QUICK = runtime.QUICK, quick
    try:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            runtime.claim(holds, statement)
    finally:
        runtime.QUICK = saved
    return out.getvalue()


def test_summarize_counts_claims_and_reports_errors():
    stream = lambda text: {"output_type": "stream", "name": "stdout", "text": text}
    error = {"output_type": "error", "ename": "AssertionError", "traceback": [],
             "evalue": "The lesson claims: x\nThis run uses your code for exercise 04.1."}  # utils.claim's note: left out
    held = _claim_output(True, "a", quick=False) + _claim_output(True, "b", quick=False)
    assert compat.summarize(_nb(stream(held)), quick=False) == {
        "claims": 2, "claims_not_asserted": 0}
    assert compat.summarize(_nb(stream("✔ claim holds: a\n"), error), quick=False)["error"] == "AssertionError: The lesson claims: x"
    assert "error" not in compat.summarize(_nb(error, tags=["raises-exception"]), quick=False)  # an expected error
    quick = compat.summarize(_nb(stream(_claim_output(False, "a", quick=True))), quick=True)
    assert quick["claims_not_asserted"] == 1 and "not attempted" in quick["error"]
    fine = compat.summarize(_nb(stream("⏳ not attempted yet\nthis uses the course's reference\n")), quick=True)
    assert "error" not in fine and "version_check" not in fine
    spoke = compat.summarize(_nb(stream("The course supports python 3.11 to 3.12.x; ...\n⚠️ torch 2.4.1 is older\n")), quick=False)
    assert spoke["version_check"] == "⚠️ torch 2.4.1 is older"


RUN = {"python": "3.11.7", "torch_cuda": "13.0", "device": "cpu", "cpu_capability": "AVX512",
       "versions": {"torch": "2.11.0", "numpy": "2.0.2"}, "load_before": 2.0, "load_after": 3.0,
       "lessons": {"03": {"solution": {"ok": True, "seconds": 61.0, "claims": 4, "claims_not_asserted": 0},
                          "notebook": {"ok": True, "seconds": 12.0, "claims": 0, "claims_not_asserted": 3}}}}


def test_merge_keeps_other_stacks_and_partial_reruns():
    data = compat.merge({"stacks": {}}, "oldest", copy.deepcopy(RUN), "2026-12-01", "cmd")
    data = compat.merge(data, "colab", copy.deepcopy(RUN), "2026-12-01", "cmd")
    second = copy.deepcopy(RUN)
    second["lessons"] = {"04": {"solution": {"ok": False, "seconds": 5.0, "claims": 0, "error": "TypeError: x"}}}
    data = compat.merge(data, "colab", second, "2026-12-02", "cmd 04")
    assert set(data["stacks"]) == {"oldest", "colab"}
    assert set(data["stacks"]["colab"]["lessons"]) == {"03", "04"}, "a partial rerun must keep the other lessons"
    assert data["stacks"]["colab"]["lessons"]["03"]["date"] == "2026-12-01"
    upgraded = copy.deepcopy(second)
    upgraded["versions"] = {**RUN["versions"], "torch": "2.12.0"}
    data = compat.merge(data, "colab", upgraded, "2026-12-03", "cmd 04")
    assert set(data["stacks"]["colab"]["lessons"]) == {"04"}, "lessons run with other versions must not be kept"
    cuda = {**copy.deepcopy(RUN), "device": "cuda"}
    data = compat.merge(data, "colab", cuda, "2026-12-03", "cmd --device cuda")
    assert "colab (cuda)" in data["stacks"] and "colab" in data["stacks"]


def test_render_states_the_range_results_sources_and_cuda():
    empty = compat.render({"stacks": {}})
    for name, (oldest, _, _) in SUPPORTED.items():
        assert f"| {name} | {oldest} |" in empty
    assert "No lesson has been run on CUDA yet" in empty and "No stack has been run yet" in empty
    assert "03a89033" in empty and "conda-forge-pinning-feedstock#8780" in empty and "3.12" in empty
    data = compat.merge({"stacks": {}}, "colab", copy.deepcopy(RUN), "2026-12-01", "python -m tools.compat colab")
    failing = copy.deepcopy(RUN)
    failing["lessons"]["03"]["solution"] = {"ok": False, "seconds": 7.0, "claims": 1, "error": "TypeError: a|b",
                                            "version_check": "⚠️ torch 2.4.1 is older than 2.10"}
    data = compat.merge(data, "oldest", failing, "2026-12-01", "python -m tools.compat oldest")
    text = compat.render(data)
    assert "| 03 | ✅ 61 s / ✅ 12 s | ❌ 7 s / ✅ 12 s |" in text
    assert "solution: TypeError: a\\|b; the setup cell said: ⚠️ torch 2.4.1 is older than 2.10" in text
    assert "solution: TypeError: a\\|b" in text and "torch 2.11.0" in text and "load average 2.0 before" in text
    assert text.index("### colab") < text.index("### oldest")
    cuda = compat.merge(data, "colab", {**copy.deepcopy(RUN), "device": "cuda"}, "2026-12-02", "c")
    assert "No lesson has been run on CUDA yet" not in compat.render(cuda) and "colab (cuda)" in compat.render(cuda)


def test_the_stored_record_and_its_page_agree():
    data = json.loads(compat.DATA.read_text())
    assert compat.OUT.read_text() == compat.render(data), "run `python -m tools.compat --render`"
    for key, record in data["stacks"].items():
        assert record["stack"] in compat.stacks(), key
        for lesson, row in record["lessons"].items():
            for kind, result in row.items():
                if kind in ("solution", "notebook"):
                    assert result["ok"] == ("error" not in result), (key, lesson, kind)


def test_a_script_run_is_parsed_and_recorded():
    text = ("01 full rc=0 38s held=6 notasserted=0 last=\n01 quick rc=0 21s held=2 notasserted=4 last=\n"
            "02 full rc=1 57s held=5 notasserted=0 last=RuntimeError: Expected all tensors to be on the same device\n"
            "02 quick rc=124 200s held=1 notasserted=0 last=\nnoise\n")
    lessons = compat.parse_summary(text)
    assert lessons["01"]["solution"] == {"ok": True, "seconds": 38.0, "claims": 6, "claims_not_asserted": 0}
    assert lessons["02"]["solution"]["error"].startswith("RuntimeError: Expected all tensors")
    assert lessons["02"]["notebook"] == {"ok": False, "seconds": 200.0, "claims": 1, "claims_not_asserted": 0, "error": "timed out"}
    run = {**copy.deepcopy(RUN), "device": "cuda", "lessons": lessons, "note": "Made on a GPU."}
    text = compat.render(compat.merge({"stacks": {}}, "scripts", run, "2026-12-04", "cmd"))
    assert "| 02 | ❌ 57 s / ❌ 200 s |" in text and "lessons 01 passed on CUDA with every claim; 02 failed" in text
    assert "Made on a GPU." in text and "No lesson has been run on CUDA yet" not in text


def test_the_stand_ins_for_ipython_and_ipywidgets_absorb_what_the_lessons_do(tmp_path):
    for name, source in compat.STUBS.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(source)
    widgets = runpy.run_path(str(tmp_path / "ipywidgets.py"))
    w = widgets["__getattr__"]("interactive")(print, x=widgets["__getattr__"]("IntSlider")(min=0, max=3))
    assert w.children[-1].layout is not None  # any attribute, item or call: another stand-in
    display = runpy.run_path(str(tmp_path / "IPython" / "display.py"))
    assert display["display"](display["HTML"]("<b>x</b>")) is None
    assert runpy.run_path(str(tmp_path / "IPython" / "__init__.py"))["get_ipython"]() is None
