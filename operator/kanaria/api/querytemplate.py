"""Custom PromQL templates: checked when the spec is read, filled safely when measured.

Every value placed in a template is escaped as the body of a double-quoted PromQL string, so a
value cannot close the string and change the query. A placeholder is only allowed where that
escaping protects it — inside a double-quoted string (``{{window}}`` in a range) — never in
single quotes, backticks (raw strings: no escapes at all), a ``#`` comment or bare.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["VARIABLES", "TemplateError", "check_template", "escape_label_value", "fill_template"]


_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z]+)\s*\}\}")
VARIABLES = ("name", "namespace", "model", "revision", "stableRevision", "window", "horizon")


class TemplateError(ValueError):
    """A query template cannot be filled safely."""


def escape_label_value(value: str) -> str:
    """Escape a value for use between double quotes in PromQL (backslash, quote, newlines)."""
    return (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )


def _context(text: str, position: int) -> str:
    """Where ``position`` lies in PromQL: "double" (a double-quoted string, where escaping
    makes any value safe), "single" or "raw" (single quotes, backticks: escape_label_value does
    not guard them), "comment" (# to the end of the line) or "code"."""
    state, escaped = "code", False
    for ch in text[:position]:
        if state == "comment":
            if ch == "\n":
                state = "code"
        elif state in ("double", "single"):
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == ('"' if state == "double" else "'"):
                state = "code"
        elif state == "raw":
            if ch == "`":
                state = "code"
        elif ch == '"':
            state = "double"
        elif ch == "'":
            state = "single"
        elif ch == "`":
            state = "raw"
        elif ch == "#":
            state = "comment"
    return state


def _inside_quotes(text: str, position: int) -> bool:
    return _context(text, position) == "double"


def check_template(template: str) -> None:
    """Refuse a custom query template that cannot be filled safely or that would judge every
    series in Prometheus: each placeholder in a double-quoted string (or ``{{window}}`` in a
    range), and at least one ``{{revision}}`` selecting the new revision's series."""
    names = [m.group(1) for m in _PLACEHOLDER.finditer(template)]
    if "revision" not in names:
        raise TemplateError('a custom query must select the new revision, for example revision="{{revision}}"')
    fill_template(template, {v: ("1s" if v == "window" else "x") for v in VARIABLES})


def fill_template(template: str, values: Mapping[str, str]) -> str:
    """Fill ``{{var}}`` placeholders. ``window`` is a duration and goes in range brackets; every
    other variable must sit inside a double-quoted string and is escaped there."""
    out: list[str] = []
    last = 0
    for match in _PLACEHOLDER.finditer(template):
        var = match.group(1)
        if var not in values:
            raise TemplateError(
                f"unknown variable {{{{{var}}}}} in query; known: {', '.join(VARIABLES)}"
            )
        out.append(template[last : match.start()])
        if var == "window":
            if not re.fullmatch(r"[0-9]+(ms|s|m|h)", values[var]):
                raise TemplateError(f"window is not a duration: {values[var]!r}")
            out.append(values[var])
        else:
            where = _context(template, match.start())
            if where != "double":
                inside = {"single": "single quotes", "raw": "backticks", "comment": "a comment",
                          "code": "no quotes"}[where]
                raise TemplateError(
                    f"{{{{{var}}}}} must be inside double quotes (it is in {inside}), for example "
                    f'revision="{{{{{var}}}}}"'
                )
            out.append(escape_label_value(values[var]))
        last = match.end()
    out.append(template[last:])
    return "".join(out)


