"""Which Prometheus addresses a ModelDeployment may name.

The operator sends requests to ``spec.analysis.prometheus.address`` from inside the cluster,
with the network reach of its own pod — so a user who may only create ModelDeployments must not
be able to aim it at something else (server-side request forgery): the cloud's instance
metadata service, the Kubernetes API server, or an address with credentials that would then be
sent and written into status. An address is refused, and the object marked InvalidSpec, when:

- it has no host, or user:password in it, or a query or a fragment, or ``..`` in its path;
- its host is a link-local, multicast, unspecified or metadata address (169.254.169.254,
  fd00:ec2::254, 100.100.100.200, IPv4-mapped forms too), or an IPv4 address not written in
  plain dotted-decimal form (``2852039166``, ``0xa9fea9fe``, ``0251.0376.0251.0376`` are the
  same metadata address in disguise);
- its host is a metadata name (``metadata.google.internal``, ``instance-data``, ...) or the
  Kubernetes API server (``kubernetes``, ``kubernetes.default[.svc[...]]`` or the address in
  ``KUBERNETES_SERVICE_HOST``);
- the operator's environment sets ``KANARIA_PROMETHEUS_HOSTS`` (comma-separated host names;
  a leading dot allows a domain suffix, such as ``.monitoring.svc.cluster.local``) and the host
  is not one of them. Platform teams should set it.

Names are checked again where they resolve, when the operator first queries the address
(:func:`resolved_problem`): a name that resolves to a forbidden address is refused as well.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from urllib.parse import urlsplit

__all__ = ["ALLOWED_HOSTS_ENV", "address_problem", "resolved_problem"]

ALLOWED_HOSTS_ENV = "KANARIA_PROMETHEUS_HOSTS"
_METADATA_IPS = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}
_METADATA_NAMES = {"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal",
                   "metadata.azure.com", "metadata.tencentyun.com"}
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*$")


def _ip_problem(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip in _METADATA_IPS:
        return "is an instance-metadata address"
    if ip.is_link_local:
        return "is link-local (where instance-metadata services live)"
    if ip.is_multicast or ip.is_unspecified:
        return "is not a host address"
    api = os.environ.get("KUBERNETES_SERVICE_HOST", "").strip("[]")
    if api:
        try:
            if ip == ipaddress.ip_address(api):
                return "is the Kubernetes API server"
        except ValueError:
            pass
    return None


def address_problem(address: str) -> str | None:
    """Why ``address`` may not be queried; None when it may."""
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    del port
    if parts.scheme not in ("http", "https"):
        return "must be http:// or https://"
    if parts.username is not None or parts.password is not None:
        return "may not hold credentials (user:password@): Kanaria would send them and show them in status"
    if parts.query or parts.fragment:
        return "may not have a query or a fragment"
    if ".." in parts.path or "%" in parts.path or "\\" in parts.path:
        return "may not have '..', '%' or '\\' in its path"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "has no host"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        problem = _ip_problem(ip)
        if problem:
            return f"{host} {problem}"
    elif _NUMERIC_HOST.match(host):
        return f"{host}: write an IPv4 address in plain dotted-decimal form"
    else:
        if host in _METADATA_NAMES:
            return f"{host} is an instance-metadata service"
        if host == "kubernetes" or host == "kubernetes.default" or host.startswith("kubernetes.default.svc"):
            return f"{host} is the Kubernetes API server"
    allowed = [h.strip().lower() for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip()]
    if allowed and not any(host == a or (a.startswith(".") and host.endswith(a)) for a in allowed):
        return f"{host} is not among the Prometheus hosts this operator may query ({ALLOWED_HOSTS_ENV})"
    return None


def resolved_problem(address: str) -> str | None:
    """Why ``address``'s host, resolved now, may not be queried; None when it may (or when the
    name does not resolve: the query then fails and says so)."""
    host = (urlsplit(address).hostname or "").rstrip(".")
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        try:
            ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        except ValueError:
            continue
        problem = _ip_problem(ip)
        if problem:
            return f"{host} resolves to {ip}, which {problem}"
    return None
