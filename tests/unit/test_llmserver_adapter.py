"""The reference LLM server with a LoRA adapter: served beside the base model, answering from
its own samples, its metrics labelled with the base model as vLLM's are."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from kanaria.sandbox.llmserver import LLMServerProcess


@pytest.fixture(scope="module")
def adapter_server() -> Iterator[LLMServerProcess]:
    env = {
        "KANARIA_MODEL_NAME": "base-model",
        "KANARIA_MODEL_ADAPTER": "sql-lora-v2",
        "KANARIA_REVISION": "rev-b",
        "KANARIA_LLM_FIRST_TOKEN_MS": "1",
        "KANARIA_LLM_TOKEN_MS": "0",
    }
    with LLMServerProcess(env) as proc:
        yield proc


def complete(server: LLMServerProcess, model: str | None) -> httpx.Response:
    body: dict[str, object] = {"prompt": "the module", "max_tokens": 12, "seed": 11, "temperature": 1.0}
    if model is not None:
        body["model"] = model
    return httpx.post(f"{server.url}/v1/completions", json=body, timeout=30)


def test_the_adapter_is_listed_with_the_base_model_as_parent(adapter_server: LLMServerProcess) -> None:
    data = httpx.get(f"{adapter_server.url}/v1/models", timeout=10).json()["data"]
    assert [(m["id"], m["parent"]) for m in data] == [("base-model", None), ("sql-lora-v2", "base-model")]


def test_the_adapter_answers_in_its_own_name_and_differently(adapter_server: LLMServerProcess) -> None:
    base, lora = complete(adapter_server, "base-model"), complete(adapter_server, "sql-lora-v2")
    assert base.status_code == lora.status_code == 200
    assert lora.json()["model"] == "sql-lora-v2" and lora.headers["X-Kanaria-Model"] == "sql-lora-v2"
    assert base.json()["model"] == "base-model" and base.headers["X-Kanaria-Model"] == "base-model"
    # Same prompt and seed: the same answer again, but another one through the adapter.
    assert complete(adapter_server, "sql-lora-v2").json()["choices"][0]["text"] == lora.json()["choices"][0]["text"]
    assert base.json()["choices"][0]["text"] != lora.json()["choices"][0]["text"]
    assert complete(adapter_server, None).json()["model"] == "base-model"


def test_an_unknown_model_is_not_found_and_metrics_name_the_base_model(adapter_server: LLMServerProcess) -> None:
    assert complete(adapter_server, "sql-lora-v1").status_code == 404
    complete(adapter_server, "sql-lora-v2")
    metrics = httpx.get(f"{adapter_server.url}/metrics", timeout=10).text
    lines = [line for line in metrics.splitlines() if line.startswith("vllm:request_success_total{")]
    assert lines and all('model_name="base-model"' in line for line in lines)
    assert not any("sql-lora" in line for line in metrics.splitlines() if line.startswith("vllm:e2e_request_latency"))
