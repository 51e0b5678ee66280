"""Wire protocol: message schemas, error codes and the frame codec (no I/O)."""

from .codec import DecodeFailure, decode_client, decode_server, encode, encode_client, join_frame
from .errors import CloseCode, ErrorCode

__all__ = [
    "CloseCode",
    "DecodeFailure",
    "ErrorCode",
    "decode_client",
    "decode_server",
    "encode",
    "encode_client",
    "join_frame",
]
