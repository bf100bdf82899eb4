"""requirements.txt (pip, CI) and environment.yml (Binder) pin the same packages at the same versions."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def _requirements():
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def _environment():
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        m = re.match(r"\s*-\s+([A-Za-z0-9_.-]+)\s*(==?)\s*([0-9][^=\s]*)", line)
        if m and m.group(1) != "python":
            pins[CONDA_NAMES.get(m.group(1), m.group(1)).lower()] = m.group(3)
    return pins


def test_environment_and_requirements_agree():
    req, env = _requirements(), _environment()
    assert req == env, f"only in requirements.txt: {set(req.items()) - set(env.items())}; only in environment.yml: {set(env.items()) - set(req.items())}"


def test_torch_is_pinned_to_the_cpu_build():
    assert _requirements()["torch"] == "2.13.0"
    assert "pytorch=2.13.0=cpu_*" in (ROOT / "environment.yml").read_text()
