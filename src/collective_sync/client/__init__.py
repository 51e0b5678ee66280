"""Python asyncio client SDK for Collective Sync."""

from .client import Client, TimeSample
from .errors import ConnectionClosed, ServerError
from .session import Event, Session

__all__ = ["Client", "ConnectionClosed", "Event", "ServerError", "Session", "TimeSample"]
