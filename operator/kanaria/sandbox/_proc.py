"""Process, port and polling helpers shared by the local test-bed harnesses.

Every long-running program is started in its own session (hence its own process group), with
its output going to a log file, so that stopping it can signal the whole group and no
grandchild survives. On Linux the child also asks the kernel to SIGKILL it when its parent dies
(PR_SET_PDEATHSIG), so even a SIGKILLed test run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

_PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """A program of the test bed did not come up in time (the message carries its log tail)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGKILL me when the parent goes away."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, or a note that there is none."""
    try:
        data = path.read_bytes()[-64_000:]
    except OSError:
        return f"(no log at {path})"
    text = data.decode("utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join(text)


@dataclass
class ManagedProcess:
    """One program of the test bed: started in its own process group, logging to a file."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    _popen: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def start(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            raise RuntimeError(f"{self.name} is already running (pid {self._popen.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ if self.env is None else self.env)
        with open(self.log_path, "ab") as log:
            log.write(f"--- starting: {' '.join(self.argv)}\n".encode())
            log.flush()
            self._popen = subprocess.Popen(  # noqa: S603 - argv is built by the harness
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - no threads run in the child
            )

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def check_alive(self) -> None:
        """Raise StartupError with the log tail when the program has exited."""
        if self._popen is not None and self._popen.poll() is not None:
            raise StartupError(
                f"{self.name} exited with code {self._popen.returncode}; "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL it after `timeout` seconds, reap the leader."""
        popen = self._popen
        if popen is None:
            return
        pgid = popen.pid  # start_new_session: the leader's pid is the group id
        _signal_group(pgid, signal.SIGTERM)
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            popen.wait(timeout=10.0)
        # Anything the leader left behind in its group goes too.
        _signal_group(pgid, signal.SIGKILL)
        self._popen = None


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def processes_in_group(pgid: int) -> list[int]:
    """PIDs of live (non-zombie) processes whose process group is `pgid` (Linux /proc)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ...
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) >= 3 and int(rest[2]) == pgid and rest[0] != "Z":
            found.append(int(entry.name))
    return found


def pid_exists(pid: int) -> bool:
    """True when a live, non-zombie process has this PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    watch: Sequence[ManagedProcess] = (),
    interval: float = 0.1,
) -> None:
    """Poll `predicate` until it is true; fail fast when a watched process dies.

    Exceptions from the predicate count as "not yet" (the last one is reported on timeout).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        for proc in watch:
            proc.check_alive()
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - "not ready yet" comes in many shapes
            last_error = exc
        if time.monotonic() >= deadline:
            logs = "".join(
                f"\nlast lines of {p.name} log ({p.log_path}):\n{p.log_tail()}" for p in watch
            )
            why = f" (last error: {last_error!r})" if last_error else ""
            raise StartupError(f"timed out after {timeout:.0f}s waiting for {what}{why}{logs}")
        time.sleep(interval)


def http_get(
    url: str,
    *,
    context: ssl.SSLContext | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    """GET a URL; returns (status, body) also for HTTP error statuses."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return int(err.code), bytes(err.read())


def run(
    argv: Sequence[str],
    *,
    input_text: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> str:
    """Run a short command; return stdout, raise RuntimeError with stderr when it fails."""
    result = subprocess.run(  # noqa: S603 - argv is built by the harness
        list(argv),
        input=input_text,
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"command failed with code {result.returncode}: {' '.join(argv)}\n"
            f"stderr:\n{result.stderr.strip()}\nstdout:\n{result.stdout.strip()[-2000:]}"
        )
    return result.stdout


class ServerProcess:
    """A Python server of the sandbox run as ``python -m MODULE`` in its own process group.

    Subclasses name the ``module`` (which must print ``listening on http://HOST:PORT`` as its
    first line on stdout) and ``what`` it is, for error messages. ``env`` is added to the
    current environment, ``enable_faults`` passes ``--enable-faults`` (the sandbox's switch for
    fault injection) and ``args`` are further command-line flags. The port is chosen by the
    child (``--port 0``) and read from its first line of output; its stderr goes to
    ``log_path`` (a temporary file unless given).
    """

    module: str
    what: str

    def __init__(
        self,
        env: Mapping[str, str],
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 30.0,
        python: str = sys.executable,
        log_path: str | Path | None = None,
        enable_faults: bool = False,
        args: Sequence[str] = (),
    ) -> None:
        if log_path is None:
            prefix = f"kanaria-{self.module.rsplit('.', 1)[-1]}-"
            handle, name = tempfile.mkstemp(prefix=prefix, suffix=".log")
            os.close(handle)
            log_path = name
        self.log_path = Path(log_path)
        child_env = {**os.environ, **env}
        package_root = str(Path(__file__).resolve().parents[2])
        child_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, child_env.get("PYTHONPATH", "")) if p
        )
        # PR_SET_PDEATHSIG fires when the *thread* that started the child exits, not the
        # process: a server started from a pool thread would be SIGKILLed when that thread
        # ends. So ask for it only from the main thread.
        on_main_thread = threading.current_thread() is threading.main_thread()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    python, "-m", self.module, "--host", host, "--port", str(port),
                    *(["--enable-faults"] if enable_faults else []), *args,
                ],  # fmt: skip
                env=child_env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
                preexec_fn=die_with_parent if on_main_thread else None,  # noqa: PLW1509 - nothing else runs in the child
            )
        self.url = self._await_listening(startup_timeout)
        self.port = int(self.url.rsplit(":", 1)[1])
        self.host = host

    def _await_listening(self, timeout: float) -> str:
        result: list[str] = []
        stdout = self.process.stdout
        assert stdout is not None
        reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        match = re.match(r"listening on (http://\S+)", result[0]) if result else None
        if match is None:
            self.stop()
            err = self.log_path.read_text(errors="replace")
            raise RuntimeError(f"{self.what} did not start: {err.strip()[-2000:]}")
        return match.group(1)

    def stop(self, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout)
            except ProcessLookupError:
                pass
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class Running:
    """A local service used as a context manager: ``start()`` on enter, ``close()`` on exit
    (which is ``stop()`` unless the service keeps something ``stop()`` does not remove)."""

    def start(self) -> Any:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
