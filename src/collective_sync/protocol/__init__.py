"""Wire protocol: message schemas, error codes and the frame codec (no I/O)."""

from .codec import MAX_DEPTH, decode_client, decode_server, encode, encode_client, join_frame
from .errors import CloseCode, ErrorCode, ProtocolError

__all__ = [
    "MAX_DEPTH",
    "CloseCode",
    "ErrorCode",
    "ProtocolError",
    "decode_client",
    "decode_server",
    "encode",
    "encode_client",
    "join_frame",
]
