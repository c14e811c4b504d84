"""TLS for a gateway exposed directly (without NGINX in front): TLS 1.2 at least, 1.3 preferred."""

from __future__ import annotations

import ssl
from pathlib import Path

from wavefleet.errors import UsageError

__all__ = ["client_tls_context", "mutual_tls_server_context", "server_tls_context"]


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for `cert` and `key` (PEM); UsageError naming the file if either is bad."""
    for label, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not path.is_file():
            raise UsageError(
                f"{label} {path}: no such file (give the PEM file of your certificate and its key)"
            )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # OpenSSL negotiates 1.3 whenever the client has it
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except ssl.SSLError as exc:
        raise UsageError(
            f"--tls-cert {cert} / --tls-key {key}: not a usable certificate and key ({exc.reason or exc}); "
            "both must be PEM and the key must match the certificate"
        ) from exc
    except OSError as exc:
        raise UsageError(f"cannot read --tls-cert {cert} / --tls-key {key}: {exc}") from exc
    return context


def mutual_tls_server_context(cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """`server_tls_context`, requiring a client certificate signed by `client_ca` when it is given."""
    context = server_tls_context(cert, key)
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (ssl.SSLError, OSError) as exc:
            raise UsageError(
                f"client_ca {client_ca}: not a readable PEM certificate ({exc}); give the CA that signs "
                "the gateways' client certificates"
            ) from exc
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_tls_context(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """A client context trusting `ca` (else the system's CAs), presenting `cert` and `key` when given."""
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
        if cert is not None and key is not None:
            context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except (ssl.SSLError, OSError) as exc:
        raise UsageError(
            f"TLS files (ca {ca}, cert {cert}, key {key}): not usable ({exc}); give PEM files, the key "
            "matching the certificate"
        ) from exc
    return context
