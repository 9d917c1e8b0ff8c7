"""Talking to the cluster: load a kubeconfig, read and patch ModelDeployments, and turn every
failure into a `CliError` holding one line a person can act on."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from kanaria.api import GROUP, PLURAL, VERSION

__all__ = ["CliError", "Kube", "connect", "kubeconfig_path"]

RESOURCE = "modeldeployments"
TIMEOUT = 15.0  # seconds for one API request


class CliError(Exception):
    """An error to print on one line of stderr, exiting with code 1."""


def kubeconfig_path(flag: str | None) -> Path:
    """The kubeconfig kubectl would use: the flag, else the first of $KUBECONFIG, else ~/.kube/config."""
    if flag:
        return Path(flag).expanduser()
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first or "~/.kube/config").expanduser()


@dataclass
class Kube:
    """A connection to one cluster, with the namespace and identity taken from the kubeconfig."""

    api: client.ApiClient
    namespace: str
    user: str
    server: str

    @property
    def objects(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def get(self, name: str, namespace: str) -> dict[str, Any]:
        try:
            obj = cast(dict[str, Any], self.objects.get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, _request_timeout=TIMEOUT
            ))
        except Exception as exc:
            raise self.explain(exc, "get", namespace, name) from exc
        return obj

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        """Every ModelDeployment in `namespace`, or in all namespaces when it is None."""
        try:
            if namespace is None:
                found = self.objects.list_cluster_custom_object(
                    GROUP, VERSION, PLURAL, _request_timeout=TIMEOUT
                )
            else:
                found = self.objects.list_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, _request_timeout=TIMEOUT
                )
        except Exception as exc:
            raise self.explain(exc, "list", namespace, None) from exc
        items: list[dict[str, Any]] = list(cast(dict[str, Any], found).get("items", []))
        return sorted(items, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))

    def merge_patch(self, name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            obj = cast(dict[str, Any], self.objects.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body,
                _content_type="application/merge-patch+json", _request_timeout=TIMEOUT,
            ))
        except Exception as exc:
            raise self.explain(exc, "patch", namespace, name) from exc
        return obj

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    def explain(self, exc: Exception, verb: str, namespace: str | None, name: str | None) -> CliError:
        """One line for a failed request."""
        if isinstance(exc, ApiException):
            return _api_error(exc, verb, namespace, name, self.user)
        if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
            return CliError(f"cannot reach the cluster at {self.server}: {_root_cause(exc)}")
        return CliError(f"{verb} {RESOURCE}: {exc}")


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Kube:
    """Load the kubeconfig (and context), as kubectl would."""
    path = kubeconfig_path(kubeconfig)
    if not path.is_file():
        raise CliError(f"no kubeconfig: {path} does not exist (use --kubeconfig or set KUBECONFIG)")
    try:
        contexts, active = config.list_kube_config_contexts(config_file=str(path))  # type: ignore[no-untyped-call]
        chosen = active
        if context is not None:
            chosen = next((c for c in contexts if c.get("name") == context), None)
            if chosen is None:
                known = ", ".join(c.get("name", "?") for c in contexts) or "none"
                raise CliError(f'context "{context}" not found in {path} (contexts: {known})')
        cfg = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path), context=context, client_configuration=cfg, persist_config=False
        )
    except ConfigException as exc:
        raise CliError(f"invalid kubeconfig {path}: {exc}") from exc
    cfg.retries = 1  # fail fast when nothing listens; kubectl does not retry either
    settings = (chosen or {}).get("context") or {}
    return Kube(
        api=client.ApiClient(cfg),
        namespace=namespace or settings.get("namespace") or "default",
        user=str(settings.get("user") or ""),
        server=str(cfg.host),
    )


def _api_error(
    exc: ApiException, verb: str, namespace: str | None, name: str | None, user: str
) -> CliError:
    status = _status_body(exc.body)
    message = str(status.get("message") or exc.reason or "")
    where = f'in namespace "{namespace}"' if namespace else "in any namespace"
    if exc.status == 404:
        if not status.get("details"):
            return CliError(
                f"the ModelDeployment API ({GROUP}/{VERSION}) is not installed in this cluster"
            )
        return CliError(f'modeldeployment "{name}" not found in namespace "{namespace}"')
    if exc.status == 403:
        who = f' (as "{user}")' if user and "User " not in message else ""
        return CliError(
            f"forbidden: cannot {verb} {RESOURCE}.{GROUP} {where}{who}: {message}"
        )
    if exc.status == 401:
        return CliError(f"unauthorized: the credentials of user \"{user}\" were rejected: {message}")
    return CliError(f"{verb} {RESOURCE} failed ({exc.status} {exc.reason}): {message}")


def _status_body(body: object) -> dict[str, Any]:
    if not body:
        return {}
    try:
        data = json.loads(body if isinstance(body, str | bytes) else str(body))
    except ValueError:
        return {}
    return data if isinstance(data, dict) and data.get("kind") == "Status" else {}


def _root_cause(exc: BaseException) -> str:
    """The innermost reason, for example "Connection refused"."""
    reason: BaseException = exc
    while True:
        inner = getattr(reason, "reason", None) or reason.__cause__ or reason.__context__
        if not isinstance(inner, BaseException) or inner is reason:
            break
        reason = inner
    text = str(reason)
    return text.split("] ", 1)[-1] if text.startswith("[Errno") else text
