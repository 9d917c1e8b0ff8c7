"""A failed end-to-end test's report shows what its operator logged: warnings and errors first,
then the last lines."""

from __future__ import annotations

from pathlib import Path

from kanaria.sandbox.operator import OperatorProcess, running_operators


def test_the_digest_shows_the_errors_and_the_last_lines(tmp_path: Path) -> None:
    op = OperatorProcess(tmp_path / "kubeconfig", workdir=tmp_path)
    lines = [f"[INFO] cycle {i}" for i in range(100)]
    lines[10] = "[ERROR] Handler 'reconcile' failed with an exception. Will retry."
    lines[11] = "Traceback (most recent call last):"
    lines[50] = "[WARNING] status write conflicted"
    op.log_path.write_text("\n".join(lines) + "\n")
    digest = op.failure_digest(last=5).splitlines()
    assert digest[0].startswith(str(op.log_path)) and "100 lines" in digest[0] and "alive: False" in digest[0]
    assert digest[1:5] == ["-- last 3 of 3 warnings and errors --", lines[10], lines[11], lines[50]]
    assert digest[5:] == ["-- last 5 lines --", *lines[-5:]]


def test_an_operator_never_started_is_not_reported(tmp_path: Path) -> None:
    op = OperatorProcess(tmp_path / "kubeconfig", workdir=tmp_path)
    assert op not in running_operators()
    assert "no log" in op.failure_digest()
