"""Error codes, close codes and the one exception that carries a refusal.

Errors are values in the protocol, not exceptions on the wire: every layer that refuses a request
(codec, session rules, state document, node) raises `ProtocolError`, and the node turns it into one
`error` message to the sender. One root type means one refusal path, one place to count and log.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """`code` of an `error` message; the request that caused it changed nothing."""

    MALFORMED = "malformed"  # not valid UTF-8 JSON, not an object, nested too deep
    UNKNOWN_TYPE = "unknown_type"  # `type` missing or not a client message type
    INVALID_MESSAGE = "invalid_message"  # schema violation (field missing, wrong type, out of range)
    TOO_LARGE = "too_large"  # frame above the configured message size limit
    RATE_LIMITED = "rate_limited"  # token bucket empty; the message was dropped
    SESSION_NOT_FOUND = "session_not_found"
    SESSION_EXISTS = "session_exists"  # create with a sessionId that is taken
    NOT_IN_SESSION = "not_in_session"  # this connection has not joined that session
    ALREADY_JOINED = "already_joined"
    TOO_MANY_SESSIONS = "too_many_sessions"  # per-connection session limit
    NOT_LEADER = "not_leader"  # leader-only action by someone else
    FORBIDDEN = "forbidden"  # e.g. an observer writing state, writing another's area
    INVALID_PATH = "invalid_path"  # state path malformed, unknown root, or shape conflict
    STATE_FULL = "state_full"  # per-session key limit reached
    BAD_TIMESTAMP = "bad_timestamp"  # `at` too far from server time
    INVALID_TARGET = "invalid_target"  # handover to someone who cannot lead
    RESUME_FAILED = "resume_failed"  # resume token unknown or expired
    SESSION_ENDED = "session_ended"  # join/resume of a session that has ended (stop retrying)
    UNAUTHORIZED = "unauthorized"  # no valid token (auth required), or a token that is refused
    TOKEN_EXPIRED = "token_expired"  # the token's `exp` has passed: get a fresh one
    SESSION_LOCKED = "session_locked"  # the host locked the session against new joins
    TOO_MANY_CONNECTIONS = "too_many_connections"  # this user already has its maximum open
    RTC_UNAVAILABLE = "rtc_unavailable"  # WebRTC off, at capacity, or no peer connection yet


class CloseCode(IntEnum):
    """WebSocket close codes the server uses; 4xxx are Collective Sync's own."""

    NORMAL = 1000
    GOING_AWAY = 1001  # server shutting down or restarting: reconnect and resume
    PROTOCOL_ERROR = 1002  # broken WebSocket framing (e.g. a continuation frame out of place)
    POLICY_VIOLATION = 1008  # persistent flooding after rate-limit errors
    MESSAGE_TOO_BIG = 1009  # frame far above the limit (beyond what we read to reply)
    UNAUTHORIZED = 4001  # auth required and no valid token in time: connect again with one
    SLOW_CONSUMER = 4002  # reliable backlog exceeded its bound; reconnect and resume
    TOKEN_EXPIRED = 4003  # the connection's token expired without a refresh: reconnect with a new one
    TOO_MANY_CONNECTIONS = 4029  # this address already has its maximum of connections open


class ProtocolError(Exception):
    """A refused request: the typed error to send back, with the request's `rid`/`session` if known.

    Layers below the node raise it without `rid`/`session` (they do not know them); the node fills
    them in from the request before it answers.
    """

    def __init__(self, code: ErrorCode, message: str, rid: int | None = None, session: str | None = None):
        super().__init__(message)
        self.code = code
        self.rid = rid
        self.session = session
