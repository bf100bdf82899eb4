"""A bubblewrap sandbox for a learner's kernel, so that grading a class is safe (Linux).

``python -m grading`` starts one Jupyter kernel per submission. Learner code is untrusted, so
on Linux that kernel runs inside `bubblewrap <https://github.com/containers/bubblewrap>`_ (``bwrap``,
the sandbox Flatpak uses; Debian package ``bubblewrap``; it needs no root, only user namespaces),
where it sees:

* read-only: the system's programs and libraries (``/usr``), the Python environment
  (``sys.prefix``, site-packages) and the course's ``utils/`` package, nothing else of the
  repository (no solutions, no notebooks, not the grader's own package ``grading/``);
* read-only, its own submission, as ``/tmp/submission/<notebook>``;
* writable: a private, empty ``/tmp`` in memory (``--tmp-mb``, 256 MB), gone with the kernel, and
  the folder that holds the kernel's connection file and sockets (its own; nothing is read from it);
* nothing else: not ``/etc`` (only the loader's cache), not the home folders, not the other
  submissions, not the output folder, no network (only an unconnected loopback), its own process
  namespace (``/proc`` shows its own processes only, so not the grader's command line), its own
  host name, an environment reduced to what the kernel needs (:func:`kernel_env`).

Limits: address space (``--memory-mb``, 4096 MB by default: PyTorch reserves much more than it
uses) and CPU time (``RLIMIT_CPU``) per process, 64 MB per file written. When the kernel is shut
down, bubblewrap's process 1 of the namespace dies, and the Linux kernel kills every process left
in it: nothing a submission started (a detached process, a new session) survives grading.
If the grader itself is killed outright (SIGKILL), the kernel's first process dies with it too
(``PR_SET_PDEATHSIG``, which bwrap's ``--die-with-parent`` sets only inside the sandbox, for the
process under bwrap's own), and with it the whole sandbox.
"""
from __future__ import annotations

import functools
import os
import shutil
import site
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COURSE_CODE = ROOT / "utils"
PASS_THROUGH = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "COURSE_THREADS", "LD_LIBRARY_PATH")  # they change the numbers


def kernel_env(home: str, extra: dict | None = None) -> dict:
    """The whole environment of a learner's kernel: what Python, PyTorch and the course need, no more.

    Nothing of the grader's own environment is passed on (no tokens, paths or user names), except the
    variables in ``PASS_THROUGH``, which choose PyTorch's numerics.
    """
    env = {
        "PATH": os.pathsep.join(dict.fromkeys([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])),
        "HOME": home, "TMPDIR": home, "IPYTHONDIR": os.path.join(home, ".ipython"),
        "MPLCONFIGDIR": os.path.join(home, ".matplotlib"), "JUPYTER_PLATFORM_DIRS": "1",
        "LANG": "C.UTF-8", "USER": "learner", "LOGNAME": "learner",
        "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "COURSE_QUICK": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    }
    env.update({k: os.environ[k] for k in PASS_THROUGH if k in os.environ})
    env.update(extra or {})
    return env


@functools.lru_cache(maxsize=1)
def _python_paths() -> list[str]:
    """The folders the Python environment lives in (interpreter, standard library, site-packages).

    Taken from a fresh interpreter in isolated mode (``-I``: without ``PYTHONPATH``, the current
    folder or a script's folder), so that the grader's own folders are never exposed.
    """
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(site.getsitepackages())
    if site.ENABLE_USER_SITE and os.path.isdir(site.getusersitepackages()):
        paths.add(site.getusersitepackages())
    try:  # .pth files and editable installs add folders of their own
        fresh = subprocess.run([sys.executable, "-I", "-c", "import sys; print('\\n'.join(sys.path))"],
                               capture_output=True, text=True, timeout=60).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        fresh = []
    paths.update(p for p in fresh if os.path.isabs(p) and os.path.isdir(p))
    real = sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})
    # Never a folder that holds the course, the grader's working folder, a home folder or the
    # temporary folder (submissions and the output may be there): only the environment's own.
    guarded = [str(ROOT), os.path.realpath(os.getcwd()), os.path.realpath(os.path.expanduser("~")),
               os.path.realpath(tempfile.gettempdir()), "/tmp"]
    real = [p for p in real if not any(g == p or g.startswith(p.rstrip("/") + "/") for g in guarded)]
    # A folder inside another bound folder needs no bind of its own.
    return [p for p in real if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in real)]


def _system_paths() -> list[str]:
    """bwrap arguments for the system's programs and libraries: /usr, and /bin, /lib... as they are."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/alternatives"):
        if os.path.exists(path):
            args += ["--ro-bind", path, path]
    # CPU topology, which PyTorch and OpenMP read to choose their kernels (no secrets in it).
    if os.path.isdir("/sys/devices/system/cpu"):
        args += ["--ro-bind", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
    return args


@functools.lru_cache(maxsize=1)
def bwrap() -> str | None:
    """The path of a working ``bwrap``, or None (not installed, not Linux, or user namespaces disabled)."""
    return None if problem() else shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def problem() -> str:
    """Why the sandbox cannot be used here ("" when it can)."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox (bubblewrap) exists on Linux only, and this is {sys.platform}"
    path = shutil.which("bwrap")
    if path is None:
        return "bubblewrap (`bwrap`) is not installed: `sudo apt-get install bubblewrap` (Debian, Ubuntu), `dnf install bubblewrap` (Fedora)"
    try:
        run = subprocess.run([path, *_system_paths(), "--proc", "/proc", "--dev", "/dev", "--unshare-all",
                              "--die-with-parent", "--", "/usr/bin/env", "true"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        return f"bubblewrap (`{path}`) could not run: {err}"
    if run.returncode != 0:
        return (f"bubblewrap (`{path}`) could not create a sandbox here: {run.stderr.strip()[:300]} "
                "(are unprivileged user namespaces disabled? see `sysctl kernel.unprivileged_userns_clone`)")
    return ""


# Die with the grader (the process whose id is `parent`), even one killed outright: the Linux kernel
# sends SIGKILL when the parent dies (PR_SET_PDEATHSIG = 1, kept across exec); if it died already, exit.
_DIE_WITH_PARENT = ("import ctypes, os, signal, sys\n"
                    "def die_with(parent):\n"
                    "    if parent and sys.platform.startswith('linux'):\n"
                    "        ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"
                    "        if os.getppid() != parent:\n"
                    "            os._exit(1)\n")
# The kernel's first process sets its limits, then becomes the kernel (limits are inherited by
# everything it starts). RLIMIT_CPU is in CPU seconds; its soft limit sends SIGXCPU, the hard one SIGKILL.
# Before that it forks a watcher that holds the read end of the grader's lifeline (a pipe whose write
# end only the grader holds): when the grader dies, however it dies, the watcher reads the end of the
# pipe and kills the kernel, and with it the sandbox. The watcher dies with the kernel.
_LIMITS = _DIE_WITH_PARENT + (
    "import resource\n"
    "mem, cpu, fsize, parent, lifeline = (int(v) for v in sys.argv[1:6])\n"
    "die_with(parent)\n"
    "resource.setrlimit(resource.RLIMIT_AS, (mem, mem))\n"
    "resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))\n"
    "if lifeline >= 0:\n"
    "    kernel = os.getpid()\n"
    "    if os.fork() == 0:\n"
    "        die_with(kernel)\n"
    "        while os.read(lifeline, 64):\n"
    "            pass\n"
    "        os.kill(kernel, signal.SIGKILL)\n"
    "        os._exit(0)\n"
    "    os.close(lifeline)\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[6:]])\n")
# Outside the sandbox: die with the grader, open bwrap's arguments as a descriptor, become bwrap.
_LAUNCH = _DIE_WITH_PARENT + (
    "die_with(int(sys.argv[1]))\n"
    "fd = os.open(sys.argv[3], os.O_RDONLY)\n"
    "os.set_inheritable(fd, True)\n"
    "os.execv(sys.argv[2], [sys.argv[2], '--args', str(fd), '--', *sys.argv[4:]])\n")


def limited(argv: list[str], memory_mb: int, cpu_seconds: int, file_mb: int = 64, die_with_grader: bool = False,
            lifeline: int = -1) -> list[str]:
    """Python with arguments ``argv`` (``["-m", "ipykernel_launcher", ...]``), under the memory, CPU-time and
    file-size limits. die_with_grader: killed when this process dies (its direct child only, outside a
    sandbox); lifeline: the descriptor, passed to the process, of the read end of :func:`lifeline`."""
    return [sys.executable, "-c", _LIMITS, str(memory_mb * 2 ** 20), str(int(cpu_seconds)), str(file_mb * 2 ** 20),
            str(os.getpid() if die_with_grader else 0), str(lifeline), *argv]


_LIFELINE: list = []  # (read end, write end), made once
_LIFELINE_LOCK = threading.Lock()


def lifeline() -> int:
    """The read end of this process's lifeline: a pipe whose write end it keeps open until it dies."""
    with _LIFELINE_LOCK:
        if not _LIFELINE:
            _LIFELINE.extend(os.pipe())  # neither end is inherited, except where a launch passes the read end (pass_fds)
    return _LIFELINE[0]


def command(argv: list[str], *, own: str, submission: Path | None, env: dict,
            tmp_mb: int = 256, args_file: str | None = None) -> list[str]:
    """``argv`` inside a fresh sandbox (see the module's docstring).

    own: a folder of the grader's (the kernel's connection file and sockets), bound writable at the
    same path. submission: the learner's notebook, bound read-only in ``/tmp/submission/``.
    env: the kernel's whole environment. args_file: where to write bwrap's arguments (outside
    ``own``), which bwrap then reads from a file descriptor: the sandbox's ``/proc/1/cmdline`` then
    shows no path of the grader's (not the submission's, not the course's binds).
    """
    path = bwrap()
    if path is None:
        raise RuntimeError(f"no sandbox: {problem()}")
    args = [path, "--unshare-all", "--die-with-parent", "--new-session", "--hostname", "grader-sandbox",
            *_system_paths(), "--proc", "/proc", "--dev", "/dev", "--size", str(tmp_mb * 2 ** 20), "--tmpfs", "/tmp"]
    for p in _python_paths():
        args += ["--ro-bind", p, p]
    args += ["--ro-bind", str(COURSE_CODE), str(COURSE_CODE)]
    args += ["--bind", own, own]
    workdir = "/tmp/submission"
    args += ["--dir", workdir]
    if submission is not None:
        args += ["--ro-bind", str(Path(submission).resolve()), f"{workdir}/{Path(submission).name}"]
    args += ["--chdir", workdir, "--clearenv"]
    for key, value in env.items():
        args += ["--setenv", key, value]
    if args_file is None:
        return [*args, "--", *argv]
    with open(args_file, "wb") as f:
        f.write(b"".join(a.encode() + b"\0" for a in args[1:]))
    return [sys.executable, "-c", _LAUNCH, str(os.getpid()), path, args_file, *argv]
