"""Starting and stopping a MultiCellPose server.

:func:`start_server` binds the gRPC services (plus the standard ``grpc.health.v1`` health
service, the only one that needs no token) on a loopback address or a UNIX socket, opens the
local token socket, and starts the job queue. A non-loopback address is refused unless a TLS
certificate and key are configured.
"""

from __future__ import annotations

import os
import threading
from concurrent import futures
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mcp_core.errors import ParameterError

from .auth import TokenSocket
from .channel import SERVER_OPTIONS
from .config import RemoteConfig, is_loopback
from .services import add_services
from .site import Site

SERVICE_NAMES = ("multicellpose.v1.Auth", "multicellpose.v1.Server", "multicellpose.v1.Transfer",
                 "multicellpose.v1.Models", "multicellpose.v1.Segmentation", "multicellpose.v1.Datasets",
                 "multicellpose.v1.Jobs", "multicellpose.v1.Storage")


class RunningServer:
    """A started server: its address, its :class:`Site`, and :meth:`stop`."""

    def __init__(self, grpc_server: grpc.Server, site: Site, address: str, token_socket: TokenSocket | None,
                 health_servicer: health.HealthServicer) -> None:
        self.grpc_server = grpc_server
        self.site = site
        self.address = address
        self.token_socket = token_socket
        self.health = health_servicer
        self._stopped = threading.Event()

    def stop(self, grace: float = 1.0) -> None:
        """Stop serving (jobs still running are marked interrupted at the next start)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        if self.token_socket is not None:
            self.token_socket.close()
        self.grpc_server.stop(grace).wait()
        self.site.close()

    def wait(self) -> None:
        """Block until the server stops."""
        self.grpc_server.wait_for_termination()


def _credentials(config: RemoteConfig) -> grpc.ServerCredentials | None:
    if not (config.server_tls_cert and config.server_tls_key):
        return None
    try:
        key = Path(config.server_tls_key).expanduser().read_bytes()
        cert = Path(config.server_tls_cert).expanduser().read_bytes()
    except OSError as exc:
        raise ParameterError(f"Cannot read the TLS certificate or key: {exc}.") from exc
    return grpc.ssl_server_credentials([(key, cert)])


def start_server(config: RemoteConfig, bind: str | None = None, token_socket: bool = True,
                 workers: int = 64) -> RunningServer:
    """Start serving.

    Parameters
    ----------
    config
        Settings (storage root, limits, TLS).
    bind
        Overrides ``config.server_bind``: ``127.0.0.1:PORT`` (``:0`` picks a free port) or ``unix:/path``.
    token_socket
        Also answer ``multicellpose-server token`` on ``config.token_socket()``.
    workers
        Threads serving calls. Each user may hold ``max_streams_per_user`` of them with open
        streams, so this many threads keep serving everyone else while a few users hold their most.

    Raises
    ------
    ParameterError
        For a non-loopback address without TLS, or an address that cannot be bound.
    """
    bind = bind or config.server_bind
    creds = _credentials(config)
    if not is_loopback(bind) and creds is None:
        raise ParameterError(f"Refusing to listen on {bind} without TLS: bind 127.0.0.1 or a unix: socket and reach "
                             "the server through SSH, or set server_tls_cert and server_tls_key.")
    site = Site(config)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
                         options=SERVER_OPTIONS, compression=grpc.Compression.NoCompression,
                         maximum_concurrent_rpcs=workers * 4)
    add_services(server, site)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if bind.startswith("unix:"):
        path = Path(bind[5:].removeprefix("//"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
    try:
        port = server.add_secure_port(bind, creds) if creds else server.add_insecure_port(bind)
    except RuntimeError as exc:
        site.close()
        raise ParameterError(f"Cannot listen on {bind}: {exc}.") from exc
    if not port and not bind.startswith("unix:"):
        site.close()
        raise ParameterError(f"Cannot listen on {bind} (address in use?).")
    address = bind if bind.startswith("unix:") else f"{bind.rsplit(':', 1)[0]}:{port}"
    server.start()
    if bind.startswith("unix:"):
        os.chmod(bind[5:].removeprefix("//"), 0o666)  # tokens, not file modes, say who may call
    for name in ("", *SERVICE_NAMES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    sock = TokenSocket(config.token_socket(), site.tokens) if token_socket else None
    return RunningServer(server, site, address, sock, health_servicer)
