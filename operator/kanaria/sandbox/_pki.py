"""Keys and certificates for the local control plane, made with the `openssl` command.

One throw-away CA signs the API server's serving certificate (so clients verify TLS properly
instead of skipping it) and is handed to the controller-manager as its signing CA and root CA.
A separate keypair signs and verifies ServiceAccount tokens. A kubeconfig holds a token and the CA.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from kanaria.sandbox._proc import run

_DAYS = "3"


@dataclass(frozen=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    sa_private_key: Path
    sa_public_key: Path


def _openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        raise RuntimeError("the `openssl` command is needed to make the test bed's keys")
    return path


def make_pki(directory: Path, *, service_ip: str = "10.0.0.1") -> Pki:
    """Write a CA, an API-server serving certificate for 127.0.0.1, and the SA keypair."""
    directory.mkdir(parents=True, exist_ok=True)
    ssl = _openssl()
    pki = Pki(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        sa_private_key=directory / "sa.key",
        sa_public_key=directory / "sa.pub",
    )
    run(
        [
            ssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            _DAYS,
            "-subj",
            "/CN=kanaria-testbed-ca",
            "-keyout",
            str(pki.ca_key),
            "-out",
            str(pki.ca_cert),
        ]
    )
    csr = directory / "apiserver.csr"
    run(
        [
            ssl,
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=kube-apiserver",
            "-keyout",
            str(pki.serving_key),
            "-out",
            str(csr),
        ]
    )
    names = [
        "IP:127.0.0.1",
        f"IP:{service_ip}",
        "DNS:localhost",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
    ]
    ext = directory / "apiserver.ext"
    ext.write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(names)}\n"
    )
    run(
        [
            ssl,
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(pki.ca_cert),
            "-CAkey",
            str(pki.ca_key),
            "-CAcreateserial",
            "-days",
            _DAYS,
            "-extfile",
            str(ext),
            "-out",
            str(pki.serving_cert),
        ]
    )
    run(
        [
            ssl,
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            str(pki.sa_private_key),
        ]
    )
    run([ssl, "ec", "-in", str(pki.sa_private_key), "-pubout", "-out", str(pki.sa_public_key)])
    return pki


def write_kubeconfig(
    path: Path, server: str, ca_file: Path, user: str, token: str, *, namespace: str = "default"
) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kanaria-local",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": "kanaria-local",
                "context": {"cluster": "kanaria-local", "user": user, "namespace": namespace},
            }
        ],
        "current-context": "kanaria-local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
