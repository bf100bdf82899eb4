"""A fresh Jupyter kernel per submission, sandboxed (see :mod:`grading.sandbox`), with a time limit
on everything it runs."""
from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from jupyter_client import KernelManager

from grading import sandbox as box
from utils.integrity import MIME

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Outcome:
    state: str  # "ok", "error", "timeout", "died"
    error: str = ""
    verdicts: list = field(default_factory=list)


def _process_tree_cpu(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` and its descendants, living or reaped (Linux; 0 elsewhere)."""
    total, todo, tick = 0.0, [pid], os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            total += sum(int(v) for v in fields[11:15]) / tick  # utime, stime, cutime, cstime
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def _launch_command(connection: str, own: str, folder: str, sandbox: bool, submission, memory_mb: int,
                    cpu_seconds: int) -> tuple[list, dict, str, dict]:
    """(argv, extra KernelManager arguments, working folder, environment) of the kernel's process."""
    python_args = ["-m", "ipykernel_launcher", "-f", connection]
    if sandbox:
        env = box.kernel_env("/tmp")
        inner = box.limited(python_args, memory_mb, cpu_seconds, lifeline=box.lifeline())
        argv = box.command(inner, own=own, submission=submission, env=env, args_file=os.path.join(folder, "bwrap.args"))
        return argv, dict(transport="ipc", ip=os.path.join(own, "k")), folder, {"PATH": env["PATH"]}  # bwrap clears it
    cwd = os.path.join(folder, "work")
    os.makedirs(cwd)
    if sys.platform.startswith("linux"):
        argv = box.limited(python_args, memory_mb, cpu_seconds, die_with_grader=True, lifeline=box.lifeline())
    else:
        argv = [sys.executable, *python_args]
    return argv, {}, cwd, box.kernel_env(cwd)


class Kernel:
    """A fresh IPython kernel, sandboxed unless ``sandbox`` is False; ``run`` executes code with a time limit.

    Sandboxed (Linux, see :mod:`grading.sandbox`), it sees the course's code and the Python environment
    read-only, ``submission`` read-only, a private ``/tmp``; it talks to the grader over Unix sockets
    in its own folder. Without the sandbox it runs as the grader's user, in an empty temporary folder;
    in both cases its environment is :func:`grading.sandbox.kernel_env`, not the grader's.
    ``cpu_seconds`` is, once closed, the CPU time its processes used (Linux).
    """

    _live: set = set()  # every kernel started and not yet closed, for kill_all
    _lock = threading.Lock()

    def __init__(self, startup_timeout: float, sandbox: bool = True, submission: Path | None = None,
                 memory_mb: int = 4096, cpu_seconds: int = 600):
        self.folder = tempfile.mkdtemp(prefix="course-grade-")
        own = os.path.join(self.folder, "kernel")  # the kernel's connection file and sockets: all it sees of the grader's
        os.mkdir(own)
        connection = os.path.join(own, "kernel.json")
        argv, manager, cwd, env = _launch_command(connection, own, self.folder, sandbox, submission, memory_mb, cpu_seconds)

        class Launcher(KernelManager):
            def format_kernel_cmd(self, extra_arguments=None):  # this Python, with or without the sandbox
                return list(argv)

        self.cpu_seconds = 0.0
        self.devnull = open(os.devnull, "w")  # the kernel's own stdout and stderr
        self.km = self.kc = None
        with Kernel._lock:
            Kernel._live.add(self)
        try:
            self.km = Launcher(kernel_name="python3", **manager)
            self.km.connection_file = connection
            passed = {"pass_fds": (box.lifeline(),)} if sys.platform.startswith("linux") else {}
            self.km.start_kernel(cwd=cwd, env=env, stdout=self.devnull, stderr=self.devnull, **passed)
            self.kc = self.km.client()
            self.kc.start_channels()
            self.kc.wait_for_ready(timeout=startup_timeout)
        except BaseException:
            self.close()
            raise

    def _message(self, msg_id: str, outcome: Outcome, msg) -> bool:
        """Take in one message of the kernel's; True when the execution ``msg_id`` is over."""
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            return False
        kind, content = msg["msg_type"], msg["content"]
        if kind == "error":
            outcome.state = "error"
            outcome.error = f"{content.get('ename', 'Error')}: {_ANSI.sub('', content.get('evalue', ''))}".strip()
        elif kind == "display_data" and isinstance(content.get("data", {}).get(MIME), dict):
            outcome.verdicts.append(content["data"][MIME])
        return kind == "status" and content.get("execution_state") == "idle"

    def run(self, code: str, timeout: float) -> Outcome:
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False)
        deadline = time.monotonic() + max(timeout, 0.1)
        outcome = Outcome("ok")
        last_alive_check = time.monotonic()
        while True:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.1)
            except queue.Empty:
                now = time.monotonic()
                if now - last_alive_check > 0.5:
                    last_alive_check = now
                    if not self.km.is_alive():
                        return Outcome("died", verdicts=outcome.verdicts)
                if now > deadline:
                    return Outcome("timeout", verdicts=outcome.verdicts)
                continue
            if self._message(msg_id, outcome, msg):
                return outcome

    def _pid(self) -> int | None:
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return getattr(process, "pid", None)

    @classmethod
    def kill_all(cls) -> None:
        """Kill every live kernel's process now, from any thread (Ctrl-C): each ``run`` then returns "died"."""
        with cls._lock:
            pids = [k._pid() for k in cls._live]
        for pid in filter(None, pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def close(self) -> None:
        """Stop the kernel and everything it started (in the sandbox, its whole process namespace)."""
        with Kernel._lock:
            Kernel._live.discard(self)
        pid = self._pid()
        if pid and sys.platform.startswith("linux"):
            self.cpu_seconds = _process_tree_cpu(pid)
        for stop in (lambda: self.kc.stop_channels(), lambda: self.km.shutdown_kernel(now=True)):
            try:
                stop()
            except Exception:  # noqa: BLE001
                pass
        self.devnull.close()
        shutil.rmtree(self.folder, ignore_errors=True)
