"""The real reference model server process and the real load generator: with errors labelled
sooner than confirmations, the matured cohort counts equal the generator's ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tests.helpers import metric_sum, metric_value, wait_for

from kanaria.sandbox.loadgen import LoadGenerator, main
from kanaria.sandbox.modelserver import ModelServerProcess, ServerConfig
from kanaria.sandbox.train import train_revision


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Label noise: a model wrong often enough that both outcomes are well represented.
    return train_revision("breast_cancer", "v2", tmp_path_factory.mktemp("art") / "v2", label_noise=0.3)


def _env(artifact: Path) -> dict[str, str]:
    return {
        "KANARIA_MODEL_URI": f"file://{artifact}",
        "KANARIA_MODEL_NAME": "bc",
        "KANARIA_REVISION": "canary",
        "KANARIA_MATURITY_HORIZONS": "2s,1h",
    }


def test_modelserver_matured_cohorts_equal_the_generators_ground_truth(noisy: Path) -> None:
    with ModelServerProcess(_env(noisy)) as proc:
        stats = LoadGenerator(
            proc.url, "breast_cancer", rate=100, total=150, feedback_delay_s=1.0, wrong_delay_s=0.3, seed=3
        ).run()
        assert stats.ok == stats.by_revision["canary"] == 150
        right = stats.correct_by_revision["canary"]
        assert 0 < right < 150
        assert stats.labelled_correct_by_revision["canary"] == right
        assert stats.labelled_incorrect_by_revision["canary"] == 150 - right

        def matured() -> dict[str, float] | None:
            text = httpx.get(f"{proc.url}/metrics", timeout=10).text  # the scrape matures
            counts = {
                outcome: metric_value(text, "kanaria_model_matured_total", revision="canary", horizon="2", outcome=outcome)
                for outcome in ("correct", "incorrect", "unlabelled")
            }
            return counts if sum(counts.values()) == 150 else None

        counts = wait_for(matured, timeout=30, message="all 150 predictions matured at 2 s")
        assert counts == {"correct": right, "incorrect": 150 - right, "unlabelled": 0}

        text = httpx.get(f"{proc.url}/metrics", timeout=10).text
        assert metric_sum(text, "kanaria_model_matured_total", horizon="3600") == 0  # not yet due
        assert metric_value(text, "kanaria_model_pending_predictions", revision="canary") == 150

        def delays(outcome: str, le: str) -> float:
            return metric_value(text, "kanaria_model_label_delay_seconds_bucket", outcome=outcome, le=le)

        assert delays("incorrect", "1.0") == 150 - right  # errors came after about 0.3 s
        assert delays("correct", "0.5") == 0  # confirmations after about 1 s
        assert delays("correct", "+Inf") == right

    # SIGTERM: the server closes its monitor and says how many predictions it lost.
    log = proc.log_path.read_text()
    assert "shutdown: 150 predictions had not matured" in log, log


def test_modelserver_config_reads_and_checks_maturity_horizons(noisy: Path) -> None:
    assert ServerConfig.from_env(_env(noisy)).maturity_horizons == (2.0, 3600.0)
    with pytest.raises(ValueError, match="KANARIA_MATURITY_HORIZONS"):
        ServerConfig.from_env({**_env(noisy), "KANARIA_MATURITY_HORIZONS": "soon"})
    short_ttl = {**_env(noisy), "KANARIA_FEEDBACK_TTL_SECONDS": "60"}
    with pytest.raises(RuntimeError, match="at least the largest maturity horizon"):
        ModelServerProcess(short_ttl).stop()


def test_loadgen_cli_takes_a_wrong_delay(noisy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ModelServerProcess(_env(noisy)) as proc:
        argv = ["--url", proc.url, "--total", "30", "--rate", "200", "--feedback-delay", "0.05", "--wrong-delay", "0"]
        assert main(argv) == 0
    stats = json.loads(capsys.readouterr().out)
    labelled = sum(stats[f"labelled_{o}_by_revision"].get("canary", 0) for o in ("correct", "incorrect"))
    assert stats["feedback_accepted"] == labelled == 30
