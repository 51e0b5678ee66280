"""Who is connecting: verify the app's JWTs (Supabase Auth issues them) with PyJWT.

Keys: a shared HS256 secret (Supabase's legacy JWT secret) and/or asymmetric public keys from a
JWKS (Supabase's current signing keys), from a file or a URL. Every key is pinned to the one
algorithm its type allows (an HMAC secret to HS256, RSA to RS256, EC P-256 to ES256), and a
token's header may only pick among those: `alg: none` and algorithm confusion (an RS key's
public half used as an HMAC secret) are refused before any signature check.

Pure apart from `fetch` (injected): a token signed by an unknown `kid` raises `UnknownKey`, and
the I/O layer refreshes the key set (`refresh`, in a thread) and verifies again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ..protocol.errors import ErrorCode, ProtocolError

# kty (and EC curve) -> the one algorithm such a key may verify.
_KEY_ALGS = {"RSA": "RS256", "EC": "ES256"}


@dataclass(frozen=True)
class AuthConfig:
    """What to trust. Nothing configured: no tokens are accepted (anonymous mode)."""

    secret: str | None = None  # HS256 shared secret
    jwks_url: str | None = None
    jwks_file: str | None = None
    audience: str | None = None  # required `aud` when set (Supabase: "authenticated")
    issuer: str | None = None  # required `iss` when set
    leeway: float = 5.0  # seconds of clock difference tolerated on exp/nbf
    jwks_cooldown: float = 10.0  # at most one refresh of the key set this often
    name_claims: tuple[str, ...] = ("user_metadata.display_name", "user_metadata.full_name", "name")
    role_claims: tuple[str, ...] = ("app_metadata.collective_role", "user_role")

    @property
    def enabled(self) -> bool:
        return bool(self.secret or self.jwks_url or self.jwks_file)


@dataclass(frozen=True)
class Identity:
    """A verified user: `user` is the token's `sub`."""

    user: str
    name: str | None = None
    role: str | None = None  # a role claim (e.g. the app's facilitator / participant / witness)
    expires: float | None = None  # `exp`
    claims: Mapping[str, Any] = field(default_factory=dict)


class UnknownKey(Exception):
    """The token names a `kid` this verifier does not hold (yet): refresh the key set."""


def unauthorized(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.UNAUTHORIZED, message)


class Verifier:
    def __init__(
        self,
        config: AuthConfig,
        fetch: Callable[[str], bytes] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.config = config
        self.fetch = fetch
        self.clock = clock
        self._keys: dict[str, tuple[Any, str]] = {}  # kid -> (public key, its one algorithm)
        self._refreshed_at = float("-inf")
        if config.jwks_file:
            with open(config.jwks_file, "rb") as f:
                self._load(f.read())

    def verify(self, token: str) -> Identity:
        """The identity in `token`, or ProtocolError(unauthorized) saying why not; UnknownKey
        when it is signed by a key id not (yet) known."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise unauthorized(f"not a JWT: {exc}") from None
        alg, kid = header.get("alg"), header.get("kid")
        key, expected = self._key_for(alg, kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[expected],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway,
                options={"require": ["exp", "sub"], "verify_aud": self.config.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise ProtocolError(ErrorCode.TOKEN_EXPIRED, "token expired") from None
        except jwt.ImmatureSignatureError:
            raise unauthorized("token not valid yet (nbf)") from None
        except jwt.InvalidAudienceError:
            raise unauthorized("wrong audience (aud)") from None
        except jwt.InvalidIssuerError:
            raise unauthorized("wrong issuer (iss)") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"invalid token: {exc}") from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise unauthorized("the token names no user (sub)")
        return Identity(
            user=sub,
            name=_claim(claims, self.config.name_claims),
            role=_claim(claims, self.config.role_claims),
            expires=float(claims["exp"]),
            claims=claims,
        )

    def _key_for(self, alg: object, kid: object) -> tuple[Any, str]:
        if alg == "HS256":
            if not self.config.secret:
                raise unauthorized("HS256 tokens are not accepted here")
            return self.config.secret, "HS256"
        if alg not in _KEY_ALGS.values():
            raise unauthorized(f"algorithm {alg!r} is not accepted")
        if not isinstance(kid, str):
            raise unauthorized("an asymmetric token must name its key (kid)")
        found = self._keys.get(kid)
        if found is None:
            raise UnknownKey(kid)
        if found[1] != alg:
            raise unauthorized(f"key {kid!r} verifies {found[1]}, not {alg}")
        return found

    # --- the key set -----------------------------------------------------------------------

    def can_refresh(self) -> bool:
        return (
            self.config.jwks_url is not None
            and self.fetch is not None
            and self.clock() - self._refreshed_at >= self.config.jwks_cooldown
        )

    def refresh(self) -> bool:
        """Fetch the JWKS again (blocking: run it in a thread); False if not allowed yet or it
        failed (the keys held stay)."""
        if not self.can_refresh():
            return False
        self._refreshed_at = self.clock()
        assert self.config.jwks_url is not None and self.fetch is not None
        try:
            self._load(self.fetch(self.config.jwks_url))
        except (OSError, ValueError):
            return False
        return True

    def _load(self, data: bytes) -> None:
        """Replace the key set with the usable keys of a JWKS document (others are skipped)."""
        keys: dict[str, tuple[Any, str]] = {}
        for jwk in json.loads(data).get("keys", []):
            kid, kty = jwk.get("kid"), jwk.get("kty")
            alg = _KEY_ALGS.get(kty)
            if not isinstance(kid, str) or alg is None or jwk.get("alg", alg) != alg:
                continue
            if kty == "EC" and jwk.get("crv") != "P-256":
                continue
            text = json.dumps(jwk)
            keys[kid] = (RSAAlgorithm.from_jwk(text) if kty == "RSA" else ECAlgorithm.from_jwk(text), alg)
        self._keys = keys


def _claim(claims: Mapping[str, Any], paths: tuple[str, ...]) -> str | None:
    """The first of `paths` (dotted, into nested claims) that holds a non-empty string."""
    for path in paths:
        node: Any = claims
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if isinstance(node, str) and node.strip():
            return node.strip()
    return None


__all__ = ["AuthConfig", "Identity", "UnknownKey", "Verifier"]
