"""Hostile input: values from a spec cannot change a PromQL query, and custom queries go only to
the configured Prometheus."""

from __future__ import annotations

import http.server
import threading
import urllib.parse
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from kanaria.analysis.prometheus import PrometheusProvider
from kanaria.analysis.templates import TemplateError, counter_increase, fill_template
from kanaria.api.models import Analysis, Model

HOSTILE = ['"', "\\", '"} or vector(1) #', "{{model}}", "a\nb", "x\"}[5m]) or up{a=\"", "\\\"", "\r\t"]


def _unquote(body: str) -> str:
    """Undo escape_label_value the way the PromQL lexer reads a double-quoted string."""
    out, i = [], 0
    table = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
    while i < len(body):
        if body[i] == "\\":
            out.append(table[body[i + 1]])
            i += 2
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def _single_string(query: str, prefix: str, suffix: str) -> str:
    assert query.startswith(prefix) and query.endswith(suffix), query
    body = query[len(prefix) : -len(suffix)]
    # The body must hold no unescaped quote: the string cannot be closed early.
    i = 0
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        assert body[i] != '"', query
        i += 1
    return _unquote(body)


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40)))
def test_template_values_stay_inside_their_string(value: str) -> None:
    query = fill_template('max(q{revision="{{revision}}"})', {"revision": value})
    assert _single_string(query, 'max(q{revision="', '"})') == value


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.sampled_from(HOSTILE), st.text(max_size=40)))
def test_built_in_queries_escape_label_values(value: str) -> None:
    query = counter_increase("m_total", {"revision": value}, 60)
    assert _single_string(query, 'sum(increase(m_total{revision="', '"}[60s]))') == value


@pytest.mark.parametrize(
    "template",
    ["max(q{revision={{revision}}})", "q{{revision}}", 'q{a="x"} or {{model}}'],
)
def test_placeholders_outside_quotes_are_refused(template: str) -> None:
    with pytest.raises(TemplateError, match="must be inside double quotes"):
        fill_template(template, {"revision": "r", "model": "m"})


def test_unknown_placeholders_are_refused() -> None:
    with pytest.raises(TemplateError, match="unknown variable"):
        fill_template('q{a="{{secret}}"}', {"revision": "r"})


@pytest.mark.parametrize("name", ['iris"', "Iris", "a{b}", "a\nb", "-iris", "x" * 64])
def test_model_names_are_dns_labels(name: str) -> None:
    with pytest.raises(ValidationError):
        Model(name=name, version="v1", uri="s3://m")


@pytest.mark.parametrize(
    "address",
    ["file:///etc/passwd", "gopher://x", "http://", "http://a b", "javascript:alert(1)", "//evil"],
)
def test_prometheus_address_must_be_http(address: str) -> None:
    with pytest.raises(ValidationError):
        Analysis.model_validate({"prometheus": {"address": address}})


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, list[str]]]] = []

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self._answer()

    def do_POST(self) -> None:  # noqa: N802
        self._answer()

    def _answer(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode()) if length else {}
        type(self).seen.append((url.path, {**urllib.parse.parse_qs(url.query), **form}))
        body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, dict[str, list[str]]]]]]:
    _Recorder.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "query",
    [
        "vector(1) @ http://evil.example/api",
        "http://evil.example/api/v1/query?query=up",
        "up&query=evil&x=",
        "up#http://evil.example",
        "up?x=@evil.example",
    ],
)
def test_a_query_cannot_leave_the_configured_prometheus(
    recorder: tuple[str, list[tuple[str, dict[str, list[str]]]]], query: str
) -> None:
    address, seen = recorder
    PrometheusProvider(address, timeout=2).query(query)
    assert seen, "the configured Prometheus got nothing"
    for path, params in seen:
        assert path == "/api/v1/query"
        assert params["query"] == [query]  # one query parameter, byte for byte


@pytest.mark.parametrize(
    ("template", "where"),
    [
        ("max(q{revision=`{{revision}}`})", "backticks"),
        ("max(q{revision='{{revision}}'})", "single quotes"),
        ('max(q{revision="{{revision}}"}) # "{{model}}"', "a comment"),
        ('max(q{revision="{{revision}}"}) + max(q{m="a"} # "\n) + {{model}}', "no quotes"),
        ('max(q{revision="x\\"{{revision}}"}) + `"` + {{model}}', "no quotes"),
    ],
)
def test_placeholders_in_other_quotes_or_comments_are_refused(template: str, where: str) -> None:
    with pytest.raises(TemplateError, match=f"it is in {where}"):
        fill_template(template, {"revision": "r", "model": "m"})


def test_a_custom_query_must_select_the_new_revision() -> None:
    from kanaria.api.querytemplate import check_template

    with pytest.raises(TemplateError, match="must select the new revision"):
        check_template("max(kanaria_model_requests_total)")
    check_template('max(q{revision="{{revision}}", a=`{`, b=\'}\'}[{{window}}]) # note')
