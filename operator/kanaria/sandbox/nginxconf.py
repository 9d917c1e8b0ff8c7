"""The nginx configuration of the sandbox's mirroring hop (:mod:`kanaria.sandbox.mirror`): the
proxy to HAProxy, the mirror of ``/predict`` and ``/feedback`` to a shadow picked by request
id, header pins of an A/B test by match, and the state location a reload is checked by."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
from dataclasses import dataclass
from pathlib import Path

from kanaria.sandbox.proxy import SERVER_HEADER

__all__ = ["MIRRORED_HEADER", "MIRRORED_PATHS", "STATE_PATH", "MirrorError", "MirrorTarget", "Pin", "percent_share",
           "render_config"]

STATE_PATH = "/_kanaria_mirror_state"
MIRRORED_HEADER = "X-Kanaria-Mirrored"  # set to 1 on the copies the shadow receives
MIRRORED_PATHS = ("/predict", "/feedback")


class MirrorError(RuntimeError):
    """nginx did not start, refused a configuration, or did not take it in time."""


@dataclass(frozen=True)
class MirrorTarget:
    """Where copies go, and the share of requests copied (0 < percent <= 100)."""

    host: str
    port: int
    percent: float = 100.0


@dataclass(frozen=True)
class Pin:
    """Requests whose headers all match go to one HAProxy server (an A/B test by match).

    ``conditions`` are (header name, value, is a regular expression). nginx sets
    ``X-Kanaria-Server: server`` on matching requests that do not carry that header already,
    and HAProxy's ``use-server`` rule sends them there."""

    server: str
    conditions: tuple[tuple[str, str, bool], ...]


_HEADER_VAR = re.compile(r"^[A-Za-z0-9-]+$")


def _nginx_string(value: str) -> str:
    """A double-quoted nginx string holding ``value`` literally."""
    if any(c in value for c in '"\n\r') or "${" in value:
        raise MirrorError(f"cannot put {value!r} in an nginx map")
    return '"' + value + '"'


def _pin_maps(pin: Pin | None) -> str:
    """Maps that compute ``$kanaria_server``: the client's X-Kanaria-Server header (feedback
    stickiness) or, failing that, the pinned server when every condition holds."""
    if pin is None:
        pinned = '""'
        maps = ""
    else:
        maps = ""
        flags = []
        for i, (name, value, regex) in enumerate(pin.conditions):
            if not _HEADER_VAR.match(name):
                raise MirrorError(f"the sandbox proxy cannot match header {name!r}")
            pattern = value if regex else "^" + re.escape(value) + "$"
            maps += (
                f"    map $http_{name.lower().replace('-', '_')} $kanaria_pin_{i} {{\n"
                f"        {_nginx_string('~' + pattern)} 1;\n"
                '        default 0;\n'
                "    }\n"
            )
            flags.append(f"$kanaria_pin_{i}")
        maps += (
            f'    map "{"".join(flags)}" $kanaria_pinned {{\n'
            f'        "{"1" * len(flags)}" "{pin.server}";\n'
            '        default "";\n'
            "    }\n"
        )
        pinned = "$kanaria_pinned"
    return maps + (
        "    map $http_x_kanaria_server $kanaria_server {\n"
        f'        "" {pinned};\n'
        "        default $http_x_kanaria_server;\n"
        "    }\n"
    )


def percent_share(value: float) -> float:
    """A percent as nginx's split_clients takes it: 0..100 with at most two decimals."""
    return min(100.0, max(0.0, round(float(value), 2)))


def _user_directive() -> str:
    # A root master switches its workers to "nobody" unless told otherwise; they could not
    # use the temporary directory. Keep them as the user who started nginx.
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};\n"


def render_config(
    directory: Path,
    port: int,
    upstream: tuple[str, int],
    target: MirrorTarget | None,
    generation: int,
    *,
    mirror_timeout_s: float,
    pin: Pin | None = None,
) -> str:
    """The whole nginx.conf for one state of the mirror (and of the pin)."""
    state = json.dumps(
        {
            "generation": generation,
            "target": None if target is None else f"{target.host}:{target.port}",
            "percent": 0.0 if target is None else target.percent,
            "pin": None if pin is None else pin.server,
        }
    )
    if target is None:
        pick = ""
        shadow_upstream = ""
        mirror_body = "        return 204;\n"
    else:
        if target.percent >= 100:
            pick = ""
            skip = ""
        else:
            pick = (
                '    split_clients "${kanaria_request_key}" $kanaria_mirror_pick {\n'
                f'        {target.percent:.2f}% "1";\n'
                '        * "";\n'
                "    }\n"
            )
            skip = '        if ($kanaria_mirror_pick = "") { return 204; }\n'
        shadow_upstream = (
            "    upstream kanaria_shadow {\n"
            f"        server {target.host}:{target.port};\n"
            "        keepalive 16;\n"
            "    }\n"
        )
        timeout = f"{max(1, round(mirror_timeout_s))}s"
        mirror_body = (
            skip
            + "        proxy_http_version 1.1;\n"
            '        proxy_set_header Connection "";\n'
            "        proxy_set_header X-Request-Id $kanaria_request_key;\n"
            f"        proxy_set_header {MIRRORED_HEADER} 1;\n"
            "        proxy_connect_timeout 1s;\n"
            f"        proxy_send_timeout {timeout};\n"
            f"        proxy_read_timeout {timeout};\n"
            "        proxy_pass http://kanaria_shadow$request_uri;\n"
        )
    mirrored = "".join(
        f"    location = {path} {{\n"
        "        mirror /_kanaria_mirror;\n"
        "        mirror_request_body on;\n"
        "        proxy_pass http://kanaria_stable;\n"
        "    }\n"
        for path in MIRRORED_PATHS
    )
    d = directory
    return (
        _user_directive()
        + "daemon off;\n"
        "master_process on;\n"
        "worker_processes 1;\n"
        "worker_shutdown_timeout 5s;\n"
        f"pid {d / 'nginx.pid'};\n"
        f"lock_file {d / 'nginx.lock'};\n"
        f"error_log {d / 'error.log'} warn;\n"
        "events { worker_connections 1024; }\n"
        "http {\n"
        "    access_log off;\n"
        "    default_type application/octet-stream;\n"
        f"    client_body_temp_path {d / 'body'};\n"
        f"    proxy_temp_path {d / 'proxy'};\n"
        f"    fastcgi_temp_path {d / 'fastcgi'};\n"
        f"    uwsgi_temp_path {d / 'uwsgi'};\n"
        f"    scgi_temp_path {d / 'scgi'};\n"
        "    client_max_body_size 16m;\n"
        "    client_body_buffer_size 1m;\n"
        "    keepalive_timeout 30s;\n"
        "    proxy_http_version 1.1;\n"
        '    proxy_set_header Connection "";\n'
        "    proxy_set_header X-Request-Id $kanaria_request_key;\n"
        "    proxy_read_timeout 60s;\n"
        "    map $http_x_request_id $kanaria_request_key {\n"
        '        "" $request_id;\n'
        "        default $http_x_request_id;\n"
        "    }\n"
        + _pin_maps(pin)
        + f"    proxy_set_header {SERVER_HEADER} $kanaria_server;\n"
        + pick
        + "    upstream kanaria_stable {\n"
        f"        server {upstream[0]}:{upstream[1]};\n"
        "        keepalive 32;\n"
        "    }\n"
        + shadow_upstream
        + "    server {\n"
        f"        listen 127.0.0.1:{port};\n"
        + mirrored
        + "    location / {\n"
        "        proxy_pass http://kanaria_stable;\n"
        "    }\n"
        "    location = /_kanaria_mirror {\n"
        "        internal;\n"
        + mirror_body
        + "    }\n"
        f"    location = {STATE_PATH} {{\n"
        "        default_type application/json;\n"
        f"        return 200 '{state}';\n"
        "    }\n"
        "    }\n"
        "}\n"
    )
