"""What the sandbox's Job runner reports for a finished container, from real files: the
termination message as the kubelet reads it, and the pod status it patches."""

from __future__ import annotations

from pathlib import Path

from kanaria.sandbox.jobs import JobProcess, pod_status_patch, termination_message


def _job(tmp_path: Path, *, message: bytes = b"", log: bytes = b"", fallback: bool = False) -> JobProcess:
    job = JobProcess(
        pod="retrain-x",
        uid="0123456789",
        log_path=tmp_path / "job.log",
        termination_log=tmp_path / "termination-log",
        fallback_to_logs=fallback,
        containers=[("retrain", "img:1"), ("sidecar", "img:2")],
    )
    job.termination_log.write_bytes(message)
    job.log_path.write_bytes(log)
    return job


def test_the_message_is_the_termination_logs_first_4096_bytes(tmp_path: Path) -> None:
    job = _job(tmp_path, message=b"x" * 5000, log=b"ignored\n", fallback=True)
    assert termination_message(job, 1) == "x" * 4096


def test_an_empty_message_falls_back_to_the_logs_tail_only_on_failure(tmp_path: Path) -> None:
    lines = b"".join(b"%03d %s\n" % (i, b"y" * 45) for i in range(100))  # 50 bytes a line
    assert termination_message(_job(tmp_path, log=lines, fallback=True), 0) == ""
    assert termination_message(_job(tmp_path, log=lines, fallback=False), 1) == ""
    tail = termination_message(_job(tmp_path, log=lines, fallback=True), 2)
    assert len(tail) == 2048 and tail.endswith("099 " + "y" * 45 + "\n")
    short = b"".join(b"line %d\n" % i for i in range(100))
    assert termination_message(_job(tmp_path, log=short, fallback=True), 2).splitlines() == [
        f"line {i}" for i in range(20, 100)
    ]


def test_the_status_patch_says_how_the_container_ended(tmp_path: Path) -> None:
    status = pod_status_patch(_job(tmp_path, message=b'{"version": "v2"}'), 0)["status"]
    assert status["phase"] == "Succeeded"
    first, second = status["containerStatuses"]
    terminated = first["state"]["terminated"]
    assert first["name"] == "retrain" and first["ready"] is False
    assert terminated["exitCode"] == 0 and terminated["reason"] == "Completed"
    assert terminated["message"] == '{"version": "v2"}'
    assert terminated["startedAt"] <= terminated["finishedAt"]
    assert second["name"] == "sidecar" and second["state"]["terminated"]["exitCode"] == 0
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Ready": "False", "ContainersReady": "False"}

    failed = pod_status_patch(_job(tmp_path), 137)["status"]
    assert failed["phase"] == "Failed"
    assert failed["containerStatuses"][0]["state"]["terminated"]["reason"] == "Error"
    assert "message" not in failed["containerStatuses"][0]["state"]["terminated"]

    unstartable = _job(tmp_path)
    unstartable.start_error = "cannot start '/x': No such file or directory"
    state = pod_status_patch(unstartable, 128)["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["reason"] == "StartError" and state["message"] == unstartable.start_error
