"""JWT verification with keys generated here: HS256, RSA and EC (JWKS), and every way a token
must be refused."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from collective_sync.auth import AuthConfig, UnknownKey, Verifier
from collective_sync.protocol.errors import ProtocolError

SECRET = "a-shared-secret-of-at-least-32-bytes!!"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(key: Any, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        d = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
        d["alg"] = "RS256"
    else:
        d = json.loads(ECAlgorithm.to_jwk(key.public_key()))
        d["alg"] = "ES256"
    return {**d, "kid": kid, "use": "sig"}


def claims(**over: Any) -> dict[str, Any]:
    now = time.time()
    base = {
        "sub": "user-a",
        "exp": now + 3600,
        "iat": now,
        "aud": "authenticated",
        "iss": "https://x/auth/v1",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def token(key: Any, alg: str, kid: str | None = None, **over: Any) -> str:
    return jwt.encode(claims(**over), key, algorithm=alg, headers={"kid": kid} if kid else None)


def verifier(tmp_path: Any, keys: list[dict[str, Any]], **config: Any) -> Verifier:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    return Verifier(AuthConfig(secret=SECRET, jwks_file=str(path), **config))


def refused(v: Verifier, tok: str) -> str:
    with pytest.raises(ProtocolError) as err:
        v.verify(tok)
    return f"{err.value.code}: {err.value}"


def test_valid_tokens_of_every_kind(tmp_path: Any) -> None:
    v = verifier(tmp_path, [jwk(RSA_KEY, "r1"), jwk(EC_KEY, "e1")], audience="authenticated")
    meta = {"display_name": "Ana"}
    for tok in (
        token(SECRET, "HS256", user_metadata=meta),
        token(RSA_KEY, "RS256", "r1", user_metadata=meta),
        token(EC_KEY, "ES256", "e1", user_metadata=meta),
    ):
        who = v.verify(tok)
        assert (who.user, who.name) == ("user-a", "Ana")
        assert who.expires is not None and who.expires > time.time()


def test_every_bad_token_is_refused_with_its_reason(tmp_path: Any) -> None:
    v = verifier(tmp_path, [jwk(RSA_KEY, "r1")], audience="authenticated", issuer="https://x/auth/v1")
    now = time.time()
    assert refused(v, token(SECRET, "HS256", exp=now - 60)).startswith("token_expired")
    assert "nbf" in refused(v, token(SECRET, "HS256", nbf=now + 600))
    assert "audience" in refused(v, token(SECRET, "HS256", aud="someone-else"))
    assert "issuer" in refused(v, token(SECRET, "HS256", iss="https://evil/"))
    assert "sub" in refused(v, token(SECRET, "HS256", sub=None))
    assert "exp" in refused(v, token(SECRET, "HS256", exp=None))
    assert "Signature verification failed" in refused(
        v, token("another-secret-of-at-least-32-bytes!!", "HS256")
    )
    assert refused(v, "not.a.jwt").startswith("unauthorized")
    # alg none: unsigned tokens are never accepted.
    unsigned = jwt.encode(claims(), None, algorithm="none")
    assert "'none' is not accepted" in refused(v, unsigned)
    # HS/RS confusion: an HS256 token whose "secret" is the RSA public key (which is public).
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = _hs256_with_raw_secret(pem, kid="r1")
    assert refused(v, forged).startswith("unauthorized")
    # An RS256 token claiming an EC key's id, or an unknown algorithm.
    assert "verifies RS256, not ES256" in refused(v, token(EC_KEY, "ES256", "r1"))
    assert "is not accepted" in refused(v, token(RSA_KEY, "RS512", "r1"))


def test_hs256_is_refused_when_no_secret_is_configured(tmp_path: Any) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(RSA_KEY, "r1")]}))
    v = Verifier(AuthConfig(jwks_file=str(path)))
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert "HS256 tokens are not accepted" in refused(v, _hs256_with_raw_secret(pem, kid="r1"))


def test_an_unknown_kid_is_fetched_once_rotated_in(tmp_path: Any) -> None:
    served = {"keys": [jwk(RSA_KEY, "old")]}
    fetched: list[str] = []
    now = [1000.0]

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return json.dumps(served).encode()

    v = Verifier(
        AuthConfig(jwks_url="http://127.0.0.1:1/jwks", jwks_cooldown=10), fetch, clock=lambda: now[0]
    )
    new_key = ec.generate_private_key(ec.SECP256R1())
    tok = token(new_key, "ES256", "new")
    with pytest.raises(UnknownKey):
        v.verify(tok)
    assert v.refresh() and fetched == ["http://127.0.0.1:1/jwks"]
    with pytest.raises(UnknownKey):
        v.verify(tok)  # not published yet
    served["keys"].append(jwk(new_key, "new"))  # the issuer rotates the new key in
    assert not v.refresh()  # within the cooldown: no fetch storm from bogus kids
    now[0] += 10
    assert v.refresh()
    assert v.verify(tok).user == "user-a"
    assert len(fetched) == 2


def _hs256_with_raw_secret(secret: bytes, kid: str) -> str:
    """An HS256 token keyed with arbitrary bytes (PyJWT itself refuses PEM keys as HMAC secrets,
    so sign by hand, as an attacker would)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64(json.dumps(claims()).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"
