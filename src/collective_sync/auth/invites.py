"""Invites to private sessions: tokens the server signs (HS256, PyJWT) with its own secret.

An invite names the session and the role it grants (participant or witness) and expires; the
host can revoke one by its id. Pure: the secret and the time are passed in.
"""

from __future__ import annotations

import secrets
from typing import Literal

import jwt

from ..protocol.errors import ErrorCode, ProtocolError

InviteRole = Literal["participant", "witness"]
MAX_TTL = 30 * 24 * 3600.0


def issue(secret: bytes, session: str, role: InviteRole, ttl: float, now: float) -> tuple[str, str, float]:
    """A new invite: (token, its id, when it expires)."""
    jti, exp = secrets.token_urlsafe(9), now + min(ttl, MAX_TTL)
    claims = {"typ": "invite", "sid": session, "role": role, "exp": exp, "jti": jti}
    return jwt.encode(claims, secret, algorithm="HS256"), jti, exp


def check(secret: bytes, token: str, session: str, now: float) -> tuple[str, InviteRole, float]:
    """(id, role, expiry) of a valid invite to `session`; ProtocolError(forbidden) saying why not."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["exp", "jti", "sid"], "verify_exp": False},
        )
    except jwt.PyJWTError:
        raise ProtocolError(ErrorCode.FORBIDDEN, "not a valid invite") from None
    if claims.get("typ") != "invite" or claims.get("role") not in ("participant", "witness"):
        raise ProtocolError(ErrorCode.FORBIDDEN, "not a valid invite")
    if claims["sid"] != session:
        raise ProtocolError(ErrorCode.FORBIDDEN, "this invite is for another session")
    if float(claims["exp"]) <= now:
        raise ProtocolError(ErrorCode.FORBIDDEN, "this invite has expired")
    return str(claims["jti"]), claims["role"], float(claims["exp"])
