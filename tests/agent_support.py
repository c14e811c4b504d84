"""Agents for tests: `wave agent` in its own process over real llama-server engines.

    with serving_agent(tmp_path, [smol("a", 256)], secret="s3cret") as agent:
        agent.url                        # http://127.0.0.1:PORT (its OpenAI API is agent.url + /v1)
        agent.status()                   # GET /agent/v1/status, as JSON
        agent.log()                      # what it wrote so far

`mutual_tls(folder)` makes a CA, a server certificate for 127.0.0.1 and a client certificate.

`smol(name, context)` is the bundled SmolLM2 served under `name` with one slot of `context` tokens
and one thread: the same file under two names with different contexts is two distinct models.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import signal
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import gguf
import numpy as np
import pytest

from helpers import free_port, http_request, start_wave, wait_until, wave_env
from wavefleet.engines.llama_server import find_llama_server
from wavefleet.errors import EngineError

SECRET_ENV = "WAVE_AGENT_SECRET"


def needs_llama_server() -> None:
    try:
        find_llama_server()
    except EngineError as exc:
        pytest.skip(f"no llama-server binary: {exc}")


def smol(name: str, context: int, **extra: Any) -> dict[str, Any]:
    """The bundled model under `name`: one slot of `context` tokens, one thread."""
    return {"name": name, "gguf": "bundled:smollm2", "context": context, "slots": 1, "threads": 1, **extra}


@dataclass(frozen=True)
class Certificates:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self, *, with_certificate: bool = True) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if with_certificate:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def unloadable_gguf(path: Path) -> Path:
    """A GGUF that reads as a Llama model but that llama.cpp cannot load (no tokenizer, no layers)."""
    writer = gguf.GGUFWriter(str(path), "llama")
    for key, value in (
        ("context_length", 2048), ("embedding_length", 64), ("block_count", 2),
        ("feed_forward_length", 128), ("attention.head_count", 4),
    ):  # fmt: skip
        writer.add_uint32(f"llama.{key}", value)
    writer.add_tensor("token_embd.weight", np.zeros((32, 64), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def mutual_tls(folder: Path) -> Certificates:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
        cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert_path, key_path

    def builder(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name(issuer))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        builder("wavefleet test CA", ca_key, "wavefleet test CA")
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    ca_path, _ = write("ca", ca, ca_key)
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        builder("127.0.0.1", server_key, "wavefleet test CA")
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(authority, False)
        .sign(ca_key, hashes.SHA256())
    )
    server_cert, server_key_path = write("server", server, server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = (
        builder("gateway", client_key, "wavefleet test CA")
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .add_extension(authority, False)
        .sign(ca_key, hashes.SHA256())
    )
    client_cert, client_key_path = write("client", client, client_key)
    return Certificates(ca_path, server_cert, server_key_path, client_cert, client_key_path)


@dataclass
class RunningAgent:
    url: str
    secret: str | None
    process: subprocess.Popen[str]
    output: IO[str]
    ssl_context: ssl.SSLContext | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"} if self.secret else {}

    def status(self) -> dict[str, Any]:
        if self.ssl_context is not None:
            request = urllib.request.Request(f"{self.url}/agent/v1/status", headers=self.headers())
            with urllib.request.urlopen(request, timeout=10, context=self.ssl_context) as reply:
                tls_found: dict[str, Any] = json.loads(reply.read())
                return tls_found
        code, _, body = http_request("GET", f"{self.url}/agent/v1/status", headers=self.headers())
        assert code == 200, body
        found: dict[str, Any] = json.loads(body)
        return found

    def model(self, name: str) -> dict[str, Any]:
        return next(m for m in self.status()["models"] if m["name"] == name)

    def log(self) -> str:
        self.output.seek(0)
        return self.output.read()


@contextmanager
def serving_agent(
    folder: Path,
    models: list[dict[str, Any]],
    *,
    secret: str | None = None,
    budget: str = "2GiB",
    defaults: dict[str, Any] | None = None,
    tls: Certificates | None = None,
    telemetry: dict[str, Any] | None = None,
    ready_within_s: float = 60,
) -> Iterator[RunningAgent]:
    """`wave agent --config` on a free loopback port until the block ends (then SIGTERM, which
    stops its engines); with `tls`, on HTTPS requiring a client certificate from its CA."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "name": folder.name,
        "port": port,
        "devices": {"cpu": {"budget": budget}},
        "models": models,
        "defaults": {
            "load_timeout": 60,
            "backoff": {"base": 0.2, "max": 1},
            "stop_timeout": 5,
            **(defaults or {}),
        },
    }
    if telemetry is not None:
        config["telemetry"] = telemetry
    if tls is not None:
        config["tls"] = {"cert": str(tls.server_cert), "key": str(tls.server_key), "client_ca": str(tls.ca)}
    path = folder / "agent.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    env = wave_env(**({SECRET_ENV: secret} if secret else {}))
    if not secret:
        env.pop(SECRET_ENV, None)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    with tempfile.TemporaryFile(mode="w+") as output:
        process = start_wave("agent", "--config", str(path), env=env, stdout=output, stderr=output)
        context = tls.client_context() if tls is not None else None
        agent = RunningAgent(url=url, secret=secret, process=process, output=output, ssl_context=context)

        def listening() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"wave agent exited during start-up: {agent.log()}")
            if tls is not None:
                return _open(port)  # it listens once its models are read
            code, _, _ = http_request("GET", f"{url}/health", timeout=2) if _open(port) else (0, {}, b"")
            return code == 200

        try:
            wait_until(
                listening, timeout_s=ready_within_s, interval_s=0.1, message="wave agent did not start"
            )
            yield agent
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def _open(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0
