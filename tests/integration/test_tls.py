"""TLS served directly (--tls-cert/--tls-key): wss:// and https:// with a certificate made here."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import ssl
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import make_config

from collective_sync.client import Client
from collective_sync.server.app import start


def self_signed(tmp: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return str(cert_path), str(key_path)


async def test_wss_and_https_with_the_servers_certificate(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server, port = await start(make_config(tls_cert=cert, tls_key=key))
    trust = ssl.create_default_context(cafile=cert)
    try:
        client = await Client.connect(f"wss://127.0.0.1:{port}/ws", ssl_context=trust, discipline=False)
        async with client:
            session = await client.create("Ana")
            assert session.is_leader

        def get() -> dict[str, object]:
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=trust, timeout=5) as r:
                return json.loads(r.read())  # type: ignore[no-any-return]

        assert (await asyncio.to_thread(get))["status"] == "ok"
        with pytest.raises(ssl.SSLCertVerificationError):  # the system trust store does not know it
            await Client.connect(f"wss://127.0.0.1:{port}/ws", discipline=False, timeout=3)
        with pytest.raises((OSError, TimeoutError, ConnectionError)):  # no plain text on a TLS port
            await Client.connect(f"ws://127.0.0.1:{port}/ws", discipline=False, timeout=3)
    finally:
        await server.stop()
