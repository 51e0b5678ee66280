"""Exceptions raised by the Python SDK."""

from __future__ import annotations


class ServerError(Exception):
    """The server refused a request with a typed `error` message; nothing was changed."""

    def __init__(self, code: str, message: str, session: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.session = session


class ConnectionClosed(ConnectionError):
    """The WebSocket is gone; `code`/`reason` are the close frame's (1006 when none came)."""

    def __init__(self, code: int, reason: str):
        super().__init__(f"connection closed ({code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason
