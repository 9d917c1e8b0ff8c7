"""The reference LLM server as a real process on 127.0.0.1: streaming, vLLM's metrics, faults,
feedback and the wait queue."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.helpers import metric_sum, metric_value, wait_for

from kanaria.sandbox.llmserver import LLMConfig, LLMServerProcess
from kanaria.sandbox.ngram import NgramModel, count_prompt_tokens, tokenize

FIRST_TOKEN_MS = 20.0
TOKEN_MS = 10.0
JITTER = 0.1

# vLLM's families (vllm/v1/metrics/loggers.py, PrometheusStatLogger), written out here on
# purpose: the test checks the server against vLLM, not against the server's own table.
VLLM_FAMILIES = {
    "vllm:num_requests_running": "gauge",
    "vllm:num_requests_waiting": "gauge",
    "vllm:prompt_tokens": "counter",
    "vllm:generation_tokens": "counter",
    "vllm:request_success": "counter",
    "vllm:request_prompt_tokens": "histogram",
    "vllm:request_generation_tokens": "histogram",
    "vllm:request_params_max_tokens": "histogram",
    "vllm:time_to_first_token_seconds": "histogram",
    "vllm:time_per_output_token_seconds": "histogram",
    "vllm:inter_token_latency_seconds": "histogram",
    "vllm:request_time_per_output_token_seconds": "histogram",
    "vllm:e2e_request_latency_seconds": "histogram",
    "vllm:request_queue_time_seconds": "histogram",
    "vllm:request_prefill_time_seconds": "histogram",
    "vllm:request_decode_time_seconds": "histogram",
    "vllm:request_inference_time_seconds": "histogram",
}
TTFT_LE = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
           7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0]  # fmt: skip
TOKEN_LE = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
            10.0, 20.0, 40.0, 80.0]  # fmt: skip
REQUEST_LE = [0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
              120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0]  # fmt: skip
LABELS = {"model_name": "tiny", "engine": "0", "revision": "rev-a"}


@pytest.fixture(scope="module")
def server() -> Iterator[LLMServerProcess]:
    env = {
        "KANARIA_MODEL_NAME": "tiny",
        "KANARIA_REVISION": "rev-a",
        "KANARIA_MODEL_VERSION": "v1",
        "KANARIA_LLM_FIRST_TOKEN_MS": str(FIRST_TOKEN_MS),
        "KANARIA_LLM_TOKEN_MS": str(TOKEN_MS),
        "KANARIA_LLM_JITTER": str(JITTER),
        "KANARIA_LLM_MAX_RUNNING": "8",
        "KANARIA_FAULT_SEED": "7",
    }
    with LLMServerProcess(env, enable_faults=True) as proc:
        yield proc


@pytest.fixture(scope="module")
def model() -> NgramModel:
    return NgramModel.from_stdlib(order=LLMConfig().order)


@pytest.fixture
def client(server: LLMServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
        c.post("/admin/faults", json={"first_token_ms": 0, "token_ms": 0, "abort_rate": 0, "bad_rate": 0})


@dataclass
class Streamed:
    """What a client saw of one streamed completion."""

    headers: dict[str, str]
    texts: list[str] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    ids: set[str] = field(default_factory=set)
    done: bool = False

    @property
    def text(self) -> str:
        return "".join(self.texts)


def stream(client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Streamed:
    with client.stream("POST", path, json={**body, "stream": True}, headers=headers or {}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        seen = Streamed(dict(response.headers))
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            payload = line[len("data: ") :]
            if payload == "[DONE]":
                seen.done = True
                continue
            chunk = json.loads(payload)
            seen.ids.add(chunk["id"])
            if chunk.get("usage"):
                seen.usage = chunk["usage"]
            for choice in chunk["choices"]:
                text = choice["delta"].get("content") if "delta" in choice else choice["text"]
                if text:
                    seen.texts.append(text)
                    seen.arrivals.append(time.monotonic())
                seen.finish_reason = choice["finish_reason"] or seen.finish_reason
    return seen


def scrape(client: httpx.Client) -> str:
    return client.get("/metrics").text


def chat(content: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": content}]


def long_seed(client: httpx.Client, tokens: int) -> int:
    """A seed whose (deterministic) chat answer has at least ``tokens`` tokens."""
    for seed in range(200):
        body = {"messages": chat("tell me more"), "max_tokens": tokens, "seed": seed}
        if client.post("/v1/chat/completions", json=body).json()["usage"]["completion_tokens"] == tokens:
            return seed
    raise AssertionError(f"no seed below 200 gives {tokens} tokens")


def test_streamed_chat_completion_yields_tokens_one_by_one(
    client: httpx.Client, model: NgramModel
) -> None:
    seed = long_seed(client, 12)
    seen = stream(
        client,
        "/v1/chat/completions",
        {"model": "tiny", "messages": chat("How do I wrap text?"), "max_tokens": 12, "seed": seed,
         "stream_options": {"include_usage": True}},
        headers={"X-Request-Id": "req-stream-1"},
    )  # fmt: skip
    assert seen.done and seen.finish_reason == "length"
    assert len(seen.texts) == 12 == seen.usage["completion_tokens"]  # type: ignore[index]
    # Tokens come as they are made, at least one decode delay apart: the first chunk arrives
    # well before the last.
    assert seen.arrivals[-1] - seen.arrivals[0] >= 11 * TOKEN_MS * (1 - JITTER) / 1000 * 0.9
    assert seen.text.strip() and set(tokenize(seen.text)) <= model.vocabulary
    assert seen.usage == {
        "prompt_tokens": count_prompt_tokens("user: How do I wrap text?\nassistant:"),
        "completion_tokens": 12,
        "total_tokens": seen.usage["prompt_tokens"] + 12,  # type: ignore[index]
    }
    assert seen.headers["x-kanaria-revision"] == "rev-a"
    assert seen.headers["x-request-id"] == "req-stream-1"
    assert seen.ids == {"chatcmpl-req-stream-1"}
    assert seen.headers["x-kanaria-quality"] == "good"

    # The same seed gives the same text, streamed or not.
    again = client.post(
        "/v1/chat/completions", json={"messages": chat("How do I wrap text?"), "max_tokens": 12, "seed": seed}
    ).json()
    assert again["choices"][0]["message"]["content"] == seen.text
    assert again["choices"][0]["finish_reason"] == "length"


def test_completions_continue_the_prompt_and_report_usage(client: httpx.Client, model: NgramModel) -> None:
    prompt = "Return a new"
    body = {"prompt": prompt, "max_tokens": 8, "seed": 3}
    first = client.post("/v1/completions", json=body)
    assert first.status_code == 200
    answer = first.json()
    assert answer["object"] == "text_completion" and answer["model"] == "tiny"
    assert answer["id"] == f"cmpl-{first.headers['x-request-id']}"
    text = answer["choices"][0]["text"]
    assert text.startswith(" ") and set(tokenize(text)) <= model.vocabulary
    assert answer["usage"]["prompt_tokens"] == 3
    assert answer["usage"]["completion_tokens"] == len(tokenize(text))
    assert answer["choices"][0]["finish_reason"] in ("stop", "length")
    assert client.post("/v1/completions", json=body).json()["choices"][0]["text"] == text

    seen = stream(client, "/v1/completions", {**body})
    assert seen.text == text and seen.usage is None and seen.done  # no usage unless asked

    assert client.post("/v1/completions", json={"prompt": "x", "model": "other"}).status_code == 404
    assert client.post("/v1/completions", json={"prompt": "x", "max_tokens": 0}).status_code == 400
    assert client.post("/v1/completions", json={"prompt": "x", "max_tokens": 5000}).status_code == 400
    assert client.post("/v1/completions", json={"prompt": "x", "n": 2}).status_code == 400
    assert client.post("/v1/chat/completions", json={"messages": []}).status_code == 400
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    assert client.get("/health").json()["revision"] == "rev-a"


def test_metrics_have_vllm_names_types_labels_and_buckets(client: httpx.Client) -> None:
    client.post("/v1/chat/completions", json={"messages": chat("hello"), "max_tokens": 4})
    families = {f.name: f for f in text_string_to_metric_families(scrape(client))}
    for name, kind in VLLM_FAMILIES.items():
        assert name in families, f"{name} is missing"
        family = families[name]
        assert family.type == kind, (name, family.type)
        extra = {"finished_reason"} if name == "vllm:request_success" else set()
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                assert set(sample.labels) == {*LABELS, "le"}, sample
            else:
                assert set(sample.labels) == {*LABELS, *extra}, sample
            assert {k: sample.labels[k] for k in LABELS} == LABELS

    def bounds(name: str) -> list[float]:
        return [float(s.labels["le"]) for s in families[name].samples if s.name == f"{name}_bucket"][:-1]

    assert bounds("vllm:time_to_first_token_seconds") == TTFT_LE
    assert bounds("vllm:inter_token_latency_seconds") == TOKEN_LE
    assert bounds("vllm:time_per_output_token_seconds") == TOKEN_LE
    assert bounds("vllm:request_time_per_output_token_seconds") == TOKEN_LE
    for name in ("e2e_request_latency", "request_queue_time", "request_prefill_time",
                 "request_decode_time", "request_inference_time"):  # fmt: skip
        assert bounds(f"vllm:{name}_seconds") == REQUEST_LE
    # 1-2-5 up to max_model_len (2048), as vLLM builds them.
    assert bounds("vllm:request_prompt_tokens") == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000]
    reasons = {s.labels["finished_reason"] for s in families["vllm:request_success"].samples}
    assert reasons == {"stop", "length", "abort"}
    assert {s.name for s in families["vllm:prompt_tokens"].samples} >= {"vllm:prompt_tokens_total"}
    # User feedback through the monitor library, on Kanaria's labels (model, revision, signal).
    feedback = families["kanaria_model_feedback_matured"]
    assert feedback.type == "counter"
    assert {s.labels["outcome"] for s in feedback.samples if s.name.endswith("_total")} == {"positive", "negative", "none"}
    assert {s.labels["signal"] for s in feedback.samples} == {"thumbs"}
    assert all(set(s.labels) == {"model", "revision", "signal", "horizon", "outcome"} for s in feedback.samples)
    assert {s.labels["signal"] for s in families["kanaria_model_feedback_ratings_matured"].samples} == {"rating"}


def test_counters_move_by_what_usage_reports(client: httpx.Client) -> None:
    before = scrape(client)
    usages: list[dict[str, int]] = []
    reasons: list[str] = []
    for i, max_tokens in enumerate((3, 9, 30, 5)):
        if i % 2:
            seen = stream(client, "/v1/chat/completions",
                          {"messages": chat(f"question {i}"), "max_tokens": max_tokens,
                           "stream_options": {"include_usage": True}})  # fmt: skip
            assert seen.usage is not None and seen.finish_reason is not None
            usages.append(seen.usage)
            reasons.append(seen.finish_reason)
        else:
            answer = client.post("/v1/completions", json={"prompt": f"The value {i}", "max_tokens": max_tokens}).json()
            usages.append(answer["usage"])
            reasons.append(answer["choices"][0]["finish_reason"])
    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return metric_sum(after, name, **labels) - metric_sum(before, name, **labels)

    prompt = sum(u["prompt_tokens"] for u in usages)
    completion = sum(u["completion_tokens"] for u in usages)
    answered = sum(1 for u in usages if u["completion_tokens"] > 0)
    assert delta("vllm:prompt_tokens_total") == prompt
    assert delta("vllm:generation_tokens_total") == completion
    assert delta("vllm:request_prompt_tokens_sum") == prompt
    assert delta("vllm:request_generation_tokens_sum") == completion
    assert delta("vllm:request_params_max_tokens_sum") == 3 + 9 + 30 + 5
    for reason in ("stop", "length", "abort"):
        assert delta("vllm:request_success_total", finished_reason=reason) == reasons.count(reason)
    assert delta("vllm:e2e_request_latency_seconds_count") == 4
    assert delta("vllm:request_queue_time_seconds_count") == 4
    assert delta("vllm:time_to_first_token_seconds_count") == answered
    # One inter-token gap per token after a request's first.
    assert delta("vllm:inter_token_latency_seconds_count") == completion - answered
    assert delta("vllm:time_per_output_token_seconds_count") == completion - answered
    assert metric_value(after, "vllm:num_requests_running", **LABELS) == 0
    assert metric_value(after, "vllm:num_requests_waiting", **LABELS) == 0


def _bucket_delta(before: str, after: str, name: str, le: str) -> float:
    return metric_sum(after, f"{name}_bucket", le=le) - metric_sum(before, f"{name}_bucket", le=le)


def test_ttft_histogram_shifts_with_the_slow_first_token_fault(client: httpx.Client) -> None:
    name = "vllm:time_to_first_token_seconds"
    body = {"messages": chat("quick"), "max_tokens": 2}
    runs = 10

    def run_batch() -> tuple[str, str]:
        before = scrape(client)
        for _ in range(runs):
            assert client.post("/v1/chat/completions", json=body).json()["usage"]["completion_tokens"] >= 1
        return before, scrape(client)

    base_before, base_after = run_batch()
    assert client.post("/admin/faults", json={"first_token_ms": 300}).json()["first_token_ms"] == 300
    slow_before, slow_after = run_batch()

    def count(before: str, after: str, le: str) -> float:
        return _bucket_delta(before, after, name, le)

    assert count(base_before, base_after, "+Inf") == runs == count(slow_before, slow_after, "+Inf")
    # Healthy: the first token in ~20 ms, at most a couple slower than 100 ms on a busy machine.
    assert count(base_before, base_after, "0.1") >= runs - 2
    # 300 ms more before every first token: none can be at or below 250 ms.
    assert count(slow_before, slow_after, "0.25") == 0
    mean_slow = (metric_sum(slow_after, f"{name}_sum") - metric_sum(slow_before, f"{name}_sum")) / runs
    assert mean_slow >= 0.3
    # The prefill phase took the delay (scheduled to first token), the decode phase did not.
    assert _bucket_delta(slow_before, slow_after, "vllm:request_prefill_time_seconds", "0.3") == 0
    assert _bucket_delta(slow_before, slow_after, "vllm:request_decode_time_seconds", "0.3") == runs


def test_slower_decoding_fault_moves_the_inter_token_latency(client: httpx.Client) -> None:
    name = "vllm:inter_token_latency_seconds"
    seed = long_seed(client, 6)
    body = {"messages": chat("tell me more"), "max_tokens": 6, "seed": seed}
    before = scrape(client)
    assert client.post("/v1/chat/completions", json=body).json()["usage"]["completion_tokens"] == 6
    middle = scrape(client)
    client.post("/admin/faults", json={"token_ms": 80})
    assert client.post("/v1/chat/completions", json=body).json()["usage"]["completion_tokens"] == 6
    after = scrape(client)
    assert _bucket_delta(before, middle, name, "+Inf") == 5 == _bucket_delta(middle, after, name, "+Inf")
    assert _bucket_delta(before, middle, name, "0.075") >= 4  # ~10 ms apart
    assert _bucket_delta(middle, after, name, "0.075") == 0  # at least 80 ms apart
    assert _bucket_delta(middle, after, "vllm:time_per_output_token_seconds", "0.075") == 0


def test_aborts_are_counted_with_finished_reason_abort(client: httpx.Client) -> None:
    metric = "vllm:request_success_total"
    before = scrape(client)
    client.post("/admin/faults", json={"abort_rate": 1.0})
    tokens = 0
    for i in range(3):
        seen = stream(client, "/v1/chat/completions",
                      {"messages": chat(f"abort {i}"), "max_tokens": 20,
                       "stream_options": {"include_usage": True}})  # fmt: skip
        assert seen.done and seen.finish_reason == "abort"
        assert seen.usage is not None and 1 <= seen.usage["completion_tokens"] < 20
        tokens += seen.usage["completion_tokens"]
    after = scrape(client)
    assert metric_sum(after, metric, finished_reason="abort") - metric_sum(before, metric, finished_reason="abort") == 3
    for reason in ("stop", "length"):
        assert metric_sum(after, metric, finished_reason=reason) == metric_sum(before, metric, finished_reason=reason)
    assert metric_sum(after, "vllm:generation_tokens_total") - metric_sum(before, "vllm:generation_tokens_total") == tokens


def test_a_client_that_goes_away_mid_stream_aborts_its_request(client: httpx.Client, server: LLMServerProcess) -> None:
    metric = "vllm:request_success_total"
    # Twenty tokens, 10 ms apart: the server writes many more after the client has gone.
    seed = long_seed(client, 20)
    before = metric_sum(scrape(client), metric, finished_reason="abort")
    body = {"messages": chat("tell me more"), "max_tokens": 20, "seed": seed, "stream": True}
    with httpx.Client(base_url=server.url, timeout=30) as leaving, leaving.stream(
        "POST", "/v1/chat/completions", json=body
    ) as response:
        for line in response.iter_lines():
            if '"content": "' in line and '"content": ""' not in line:
                break  # one token read, then the connection closes
    wait_for(
        lambda: metric_sum(scrape(client), metric, finished_reason="abort") == before + 1,
        timeout=10,
        message="the abandoned stream to be counted as an abort",
    )
    text = scrape(client)
    assert metric_value(text, "vllm:num_requests_running", **LABELS) == 0


def test_bad_answers_are_marked_only_for_the_load_generator(client: httpx.Client, model: NgramModel) -> None:
    client.post("/admin/faults", json={"bad_rate": 1.0})
    answer = client.post("/v1/chat/completions", json={"messages": chat("hi"), "max_tokens": 10})
    assert answer.headers["x-kanaria-quality"] == "bad"
    content = answer.json()["choices"][0]["message"]["content"]
    assert set(tokenize(content)) <= model.vocabulary  # words of the model, but no sentence
    assert "quality" not in json.dumps(answer.json())
    client.post("/admin/faults", json={"bad_rate": 0.0})
    assert client.post("/v1/chat/completions", json={"messages": chat("hi"), "max_tokens": 2}).headers[
        "x-kanaria-quality"
    ] == "good"
    assert client.post("/admin/faults", json={"abort_rate": 2}).status_code == 400
    assert client.post("/admin/faults", json={"typo": 1}).status_code == 400


def test_feedback_is_credited_to_the_serving_revision_and_unknown_ids_are_dropped(
    client: httpx.Client, server: LLMServerProcess
) -> None:
    with LLMServerProcess({"KANARIA_MODEL_NAME": "tiny", "KANARIA_REVISION": "rev-b"}) as other, httpx.Client(
        base_url=other.url, timeout=30
    ) as client_b:

        def feedback(c: httpx.Client, rid: str, thumbs: str) -> bool:
            answer = c.post("/feedback", json={"request_id": rid, "thumbs": thumbs})
            assert answer.status_code == 200
            return bool(answer.json()["accepted"])

        def counts(c: httpx.Client, revision: str) -> dict[str, float]:
            text = scrape(c)
            got = {
                o: metric_value(text, "kanaria_model_feedback_total", revision=revision, signal="thumbs", outcome=o)
                for o in ("positive", "negative")
            }
            got["unmatched"] = metric_sum(text, "kanaria_model_feedback_unmatched_total", revision=revision,
                                          signal="thumbs")
            return got

        a_before, b_before = counts(client, "rev-a"), counts(client_b, "rev-b")
        served_a = client.post("/v1/chat/completions", json={"messages": chat("a"), "max_tokens": 2})
        served_b = client_b.post("/v1/chat/completions", json={"messages": chat("b"), "max_tokens": 2})
        rid_a, rid_b = served_a.headers["x-request-id"], served_b.headers["x-request-id"]
        assert served_b.json()["id"] == f"chatcmpl-{rid_b}"

        assert feedback(client_b, rid_a, "up") is False  # rev-b never served it
        assert feedback(client, rid_a, "down") is True
        assert feedback(client, rid_a, "up") is False  # rated already
        assert feedback(client, "no-such-request", "up") is False
        assert feedback(client_b, served_b.json()["id"], "up") is True  # the response id works too
        assert client.post("/feedback", json={"request_id": rid_a, "thumbs": "sideways"}).status_code == 400
        assert client.post("/feedback", json={"request_id": rid_a, "rating": 6}).status_code == 400
        rated = client_b.post("/feedback", json={"request_id": rid_b, "rating": 4})
        assert rated.json()["accepted"] is True

        a_after, b_after = counts(client, "rev-a"), counts(client_b, "rev-b")
        assert {k: a_after[k] - a_before[k] for k in a_after} == {"positive": 0, "negative": 1, "unmatched": 2}
        assert {k: b_after[k] - b_before[k] for k in b_after} == {"positive": 1, "negative": 0, "unmatched": 1}
        assert metric_value(scrape(client_b), "kanaria_model_feedback_ratings_total", revision="rev-b",
                            signal="rating") == 1
        assert 'revision="rev-a"' not in scrape(client_b)


def test_requests_wait_for_a_running_slot_and_the_queue_has_a_limit() -> None:
    env = {
        "KANARIA_REVISION": "queue",
        "KANARIA_LLM_MAX_WAITING": "1",
        "KANARIA_FAULT_FIRST_TOKEN_MS": "2000",  # every request runs at least two seconds
    }
    with LLMServerProcess(env, enable_faults=True, args=["--max-running", "1"]) as proc, httpx.Client(
        base_url=proc.url, timeout=30
    ) as c:
        results: list[int] = []

        def ask() -> None:
            answer = c.post("/v1/chat/completions", json={"messages": chat("wait"), "max_tokens": 2})
            results.append(answer.status_code)

        threads = [threading.Thread(target=ask) for _ in range(2)]
        threads[0].start()
        wait_for(lambda: metric_sum(scrape(c), "vllm:num_requests_running") == 1, timeout=10,
                 message="the first request to run")  # fmt: skip
        threads[1].start()

        def one_waiting() -> str | None:
            text = scrape(c)
            return text if metric_sum(text, "vllm:num_requests_waiting") == 1 else None

        text = wait_for(one_waiting, timeout=10, message="the second request to wait")
        assert metric_sum(text, "vllm:num_requests_running") == 1
        full = c.post("/v1/chat/completions", json={"messages": chat("no room"), "max_tokens": 2})
        assert full.status_code == 503 and "waiting" in full.json()["error"]["message"]
        for thread in threads:
            thread.join(timeout=20)
        assert results == [200, 200]
        text = scrape(c)
        assert metric_sum(text, "vllm:request_queue_time_seconds_count") == 2
        # The second waited for the rest of the first request (two seconds before its first token,
        # less the moments the test took to start the second on a loaded machine).
        assert metric_sum(text, "vllm:request_queue_time_seconds_sum") >= 0.8
        assert metric_sum(text, "vllm:request_queue_time_seconds_bucket", le="0.3") == 1
        assert metric_sum(text, "vllm:num_requests_waiting") == 0


def test_fault_injection_is_off_unless_the_sandbox_turns_it_on() -> None:
    with LLMServerProcess({"KANARIA_REVISION": "plain"}) as proc:
        answer = httpx.post(f"{proc.url}/admin/faults", json={"abort_rate": 1.0}, timeout=10)
        assert answer.status_code == 404 and "fault injection is off" in answer.json()["error"]["message"]
        served = httpx.post(f"{proc.url}/v1/chat/completions", json={"messages": chat("x"), "max_tokens": 2}, timeout=10)
        assert served.status_code == 200 and "x-kanaria-quality" not in served.headers
    with pytest.raises(RuntimeError, match="fault injection is off but KANARIA_FAULT_ABORT_RATE"):
        LLMServerProcess({"KANARIA_FAULT_ABORT_RATE": "0.5"}).stop()


def test_config_reads_the_environment() -> None:
    config = LLMConfig.from_env(
        {"KANARIA_LLM_ORDER": "2", "KANARIA_LLM_TOKEN_MS": "5", "KANARIA_REVISION": "r9", "KANARIA_FAULT_BAD_RATE": "0.2"},
        faults_enabled=True,
    )
    assert (config.order, config.token_ms, config.revision, config.fault_bad_rate) == (2, 5.0, "r9", 0.2)
    assert config.requested_faults() == ["KANARIA_FAULT_BAD_RATE"]
    assert LLMConfig.from_env({}).model_name == "kanaria-ngram"
    with pytest.raises(ValueError, match="2..4"):
        LLMConfig.from_env({"KANARIA_LLM_ORDER": "7"})
    with pytest.raises(ValueError, match="KANARIA_LLM_TOKEN_MS"):
        LLMConfig.from_env({"KANARIA_LLM_TOKEN_MS": "fast"})
