"""Run the Kanaria operator as a real process (for the sandbox and the end-to-end tests)."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import weakref
from pathlib import Path

from kanaria.sandbox._proc import ManagedProcess, free_port, http_get, wait_until

__all__ = ["OperatorProcess", "running_operators"]

_RUNNING: weakref.WeakSet[OperatorProcess] = weakref.WeakSet()


def running_operators() -> list[OperatorProcess]:
    """The operators started in this process and not stopped yet (for failure reports)."""
    return sorted(_RUNNING, key=lambda op: str(op.log_path))


class OperatorProcess:
    """``python -m kanaria.controller.main`` under a given kubeconfig (the operator identity);
    ``args`` are extra command-line arguments, for example ``["--namespace", "team-a"]``."""

    def __init__(
        self,
        kubeconfig: Path,
        *,
        workdir: Path | None = None,
        name: str = "operator",
        namespace: str = "kanaria-system",
        extra_env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="kanaria-operator-"))
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.name = name
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "KANARIA_NAMESPACE": namespace,
            "KANARIA_METRICS_PORT": str(self.metrics_port),
            "KANARIA_METRICS_ADDRESS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        package_root = Path(__file__).resolve().parents[2]
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package_root), env.get("PYTHONPATH", "")) if p)
        self.proc = ManagedProcess(
            name,
            [sys.executable, "-m", "kanaria.controller.main",
             "--liveness", f"http://127.0.0.1:{self.health_port}/healthz", *(args or [])],
            self.workdir / f"{name}.log",
            env=env,
        )

    @property
    def log_path(self) -> Path:
        return self.proc.log_path

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> OperatorProcess:
        self.proc.start()
        _RUNNING.add(self)
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        wait_until(lambda: http_get(url)[0] == 200, timeout=timeout, what="operator liveness",
                   watch=[self.proc])
        return self

    def kill(self) -> None:
        """SIGKILL, as a crash would: no cleanup handlers run."""
        pid = self.proc.pid
        if pid is not None:
            os.killpg(pid, signal.SIGKILL)
        self.proc.stop(timeout=5)
        _RUNNING.discard(self)

    def stop(self) -> None:
        self.proc.stop(timeout=15)
        _RUNNING.discard(self)

    def alive(self) -> bool:
        return self.proc.alive()

    def log_tail(self, lines: int = 60) -> str:
        return self.proc.log_tail(lines)

    def failure_digest(self, problems: int = 15, last: int = 25) -> str:
        """What a failed test's report shows of this operator: its last warnings and errors
        (tracebacks included), then its last lines."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError as e:
            return f"(no log: {e})"
        flagged = [line for line in text if any(w in line for w in ("ERROR", "WARNING", "Traceback", "Error:"))]
        parts = [f"{self.log_path} ({len(text)} lines; alive: {self.alive()})"]
        if flagged:
            parts += [f"-- last {min(problems, len(flagged))} of {len(flagged)} warnings and errors --", *flagged[-problems:]]
        parts += [f"-- last {min(last, len(text))} lines --", *text[-last:]]
        return "\n".join(line[:400] for line in parts)

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
