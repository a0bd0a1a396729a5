"""gRPC settings shared by the server and its clients.

64 MiB messages (a 2048x2048 float image with its flows fits), no transport compression
(microscopy arrays barely compress and gzip costs more CPU than the link saves on a LAN/SSH),
and keepalive pings that notice a dead link within seconds. Current gRPC core waits
``grpc.http2.ping_timeout_ms`` for a ping's answer, so it is set next to
``grpc.keepalive_timeout_ms``.
"""

from __future__ import annotations

import grpc

MAX_MESSAGE_BYTES = 64 << 20
KEEPALIVE_MS = 5000
PING_TIMEOUT_MS = 5000

_COMMON = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]

CLIENT_OPTIONS = _COMMON + [
    ("grpc.keepalive_time_ms", KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", PING_TIMEOUT_MS),
    ("grpc.http2.ping_timeout_ms", PING_TIMEOUT_MS),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.enable_retries", 0),
]

SERVER_OPTIONS = _COMMON + [
    ("grpc.keepalive_time_ms", 20000),
    ("grpc.keepalive_timeout_ms", PING_TIMEOUT_MS),
    ("grpc.http2.ping_timeout_ms", PING_TIMEOUT_MS),
    ("grpc.http2.min_ping_interval_without_data_ms", KEEPALIVE_MS - 1000),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", KEEPALIVE_MS - 1000),
    ("grpc.so_reuseport", 0),
]


def open_channel(address: str, root_certificates: bytes | None = None) -> grpc.Channel:
    """A channel to ``host:port`` or ``unix:/path``; TLS when *root_certificates* are given."""
    if root_certificates is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=root_certificates)
        return grpc.secure_channel(address, creds, options=CLIENT_OPTIONS, compression=grpc.Compression.NoCompression)
    return grpc.insecure_channel(address, options=CLIENT_OPTIONS, compression=grpc.Compression.NoCompression)
