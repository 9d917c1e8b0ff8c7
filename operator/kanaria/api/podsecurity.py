"""What a pod template may ask for: the Kubernetes Pod Security Standard "baseline", checked
before Kanaria writes a Deployment or a Job from a user's template.

Kanaria creates the pods with its own ServiceAccount's rights, not the rights of whoever wrote
the ModelDeployment. Without this check a user allowed to create ModelDeployments — and
nothing else — would get a privileged pod with the host's root filesystem mounted (a confused
deputy). The baseline profile forbids exactly the known privilege escalations and nothing a
model server needs. A cluster that wants its own policy (Pod Security Admission on the
namespace, Kyverno, Gatekeeper) can turn this check off with ``KANARIA_POD_SECURITY=privileged``
in the operator's environment; the default is ``baseline``.

The rules follow https://kubernetes.io/docs/concepts/security/pod-security-standards/ (v1.36).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["POLICY_ENV", "baseline_violations", "policy"]

POLICY_ENV = "KANARIA_POD_SECURITY"
_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
_SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
})
_APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def policy() -> str:
    """The operator's policy: ``baseline`` (default) or ``privileged`` (no check)."""
    value = os.environ.get(POLICY_ENV, "baseline").strip() or "baseline"
    if value not in ("baseline", "privileged"):
        raise ValueError(f"{POLICY_ENV} must be baseline or privileged, not {value!r}")
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _security_context(where: str, sc: dict[str, Any]) -> list[str]:
    out = []
    selinux = _dict(sc.get("seLinuxOptions"))
    if selinux.get("type", "") not in _SELINUX_TYPES:
        out.append(f"{where}.securityContext.seLinuxOptions.type {selinux.get('type')!r} is not allowed")
    if selinux.get("user") or selinux.get("role"):
        out.append(f"{where}.securityContext.seLinuxOptions may not set user or role")
    if _dict(sc.get("seccompProfile")).get("type") == "Unconfined":
        out.append(f"{where}.securityContext.seccompProfile.type Unconfined is not allowed")
    if _dict(sc.get("appArmorProfile")).get("type") == "Unconfined":
        out.append(f"{where}.securityContext.appArmorProfile.type Unconfined is not allowed")
    if _dict(sc.get("windowsOptions")).get("hostProcess") is True:
        out.append(f"{where}.securityContext.windowsOptions.hostProcess is not allowed")
    return out


def baseline_violations(template: dict[str, Any]) -> list[str]:
    """Every way ``template`` (a PodTemplateSpec) breaks the baseline profile; empty if none."""
    pod = _dict(template.get("spec"))
    meta = _dict(template.get("metadata"))
    out: list[str] = []
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field) is True:
            out.append(f"spec.{field} is not allowed")
    pod_sc = _dict(pod.get("securityContext"))
    out += _security_context("spec", pod_sc)
    for sysctl in _list(pod_sc.get("sysctls")):
        name = _dict(sysctl).get("name", "")
        if name not in _SYSCTLS:
            out.append(f"spec.securityContext.sysctls: {name!r} is not a safe sysctl")
    for i, volume in enumerate(_list(pod.get("volumes"))):
        if "hostPath" in _dict(volume):
            out.append(f"spec.volumes[{i}] ({_dict(volume).get('name')}): hostPath volumes are not allowed")
    for key, value in _dict(meta.get("annotations")).items():
        if str(key).startswith(_APPARMOR_PREFIX) and value == "unconfined":
            out.append(f"metadata.annotations[{key}]: unconfined AppArmor is not allowed")
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(_list(pod.get(kind))):
            where = f"spec.{kind}[{i}]"
            sc = _dict(_dict(container).get("securityContext"))
            if sc.get("privileged") is True:
                out.append(f"{where}.securityContext.privileged is not allowed")
            added = [c for c in _list(_dict(sc.get("capabilities")).get("add")) if c not in _CAPABILITIES]
            if added:
                out.append(f"{where}.securityContext.capabilities.add: {', '.join(map(str, added))} not allowed")
            if sc.get("procMount") not in (None, "Default"):
                out.append(f"{where}.securityContext.procMount must be Default")
            out += _security_context(where, sc)
            for j, port in enumerate(_list(_dict(container).get("ports"))):
                if _dict(port).get("hostPort") not in (None, 0):
                    out.append(f"{where}.ports[{j}].hostPort is not allowed")
    return out
