"""Home-page card to switch between the local backend and a remote GPU server, over SSH or by address.

Over SSH, the host key's fingerprint is shown for the user to accept once; a changed key is refused.
By address (``host:port``, e.g. the local end of a manual ``ssh -L``), a token or a password logs in.
A successful connection's host, port or address (never a secret) is saved in the project's
``remote_config.json``, which the project's ``.gitignore`` then lists. Everything else in the app keeps
calling the same Backend methods.
"""

from __future__ import annotations

from nicegui import run, ui

from mcp_core.backend import LocalBackend

from .state import AppState


def human_bytes(n: int | None) -> str:
    if n is None:
        return "no limit"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


class RemotePanel:
    """Connect to / disconnect from a remote server; storage use and clean-up."""

    def __init__(self, state: AppState, on_change) -> None:
        from mcp_remote.config import load_config

        self.state = state
        self.on_change = on_change
        try:
            self.config = load_config(project=state.folder)
        except Exception as exc:  # a broken remote_config.json must not break the home page
            from mcp_remote.config import RemoteConfig

            ui.notify(f"remote_config.json is not usable ({exc}); using defaults.", type="warning", multi_line=True)
            self.config = RemoteConfig()
        with ui.expansion("Connect to a remote GPU server", icon="cloud").classes("w-full"):
            with ui.row().classes("w-full"):
                self.host = ui.input("SSH host (or ~/.ssh/config alias)", value=self.config.ssh_host
                                     ).classes("w-64").mark("remote-host")
                self.port = ui.number("Port", value=self.config.ssh_port, min=1, max=65535, step=1
                                      ).classes("w-24").mark("remote-port")
                self.user = ui.input("User").classes("w-40").mark("remote-user")
            with ui.row().classes("w-full"):
                self.password = ui.input("Password (empty: key or agent)", password=True,
                                         password_toggle_button=True).classes("w-64").mark("remote-password")
                self.key = ui.input("Private key file (optional)").classes("w-80")
            with ui.row():
                ui.button("Connect", icon="link", on_click=self.connect).props("no-caps").mark("remote-connect")
            ui.label("Or a server address, e.g. the local end of ssh -L 50051:127.0.0.1:50051 host"
                     ).classes("text-sm text-gray-600")
            with ui.row().classes("w-full items-center"):
                self.address = ui.input("Server address (host:port)", value=self.config.server_address
                                        ).classes("w-56").mark("remote-address")
                self.secret = ui.input("Token (or password)", password=True, password_toggle_button=True
                                       ).classes("w-64").mark("remote-secret")
                self.server_user = ui.input("Server user (with a password)").classes("w-48").mark("remote-server-user")
                ui.button("Connect to address", icon="lan", on_click=self.connect_address).props("no-caps").mark(
                    "remote-connect-address")
            with ui.row().classes("w-full items-center"):
                self.server_models = ui.select([], label="Model on the server").classes("w-64").mark("server-model")
                ui.button("Download to this computer", icon="download", on_click=self.download_model).props(
                    "no-caps flat").mark("download-model")
            with ui.row():
                ui.button("Use this computer", icon="computer", on_click=self.disconnect).props("no-caps flat")
                ui.button("Clear remote training files", icon="delete_sweep", on_click=self.clear).props("no-caps flat")
            self.usage = ui.label("").classes("text-sm text-gray-600")

    async def connect(self, _=None, trusted: bool = False) -> None:
        from mcp_remote.tunnel import HostKeyChanged, HostKeyUnknown, connect

        host = (self.host.value or "").strip()
        if not host:
            ui.notify("Enter the SSH host.", type="warning")
            return
        kwargs = {"user": self.user.value or None, "password": self.password.value or None,
                  "key": self.key.value or None, "port": int(self.port.value or 22), "config": self.config}
        try:
            backend = await run.io_bound(connect, host, **kwargs)
        except HostKeyUnknown as exc:
            if not trusted and await self.ask_trust(exc.host_key):
                await self.connect(trusted=True)
            return
        except HostKeyChanged as exc:
            ui.notify(f"The host key of {host} has CHANGED ({exc.host_key.fingerprint}); refusing to connect. "
                      "If the server was reinstalled, remove its old line from known_hosts.", type="negative",
                      multi_line=True, timeout=0, close_button=True)
            return
        except Exception as exc:
            ui.notify(f"Could not connect to {host}: {exc}", type="negative", multi_line=True)
            return
        await self._use(backend, host, ssh_host=host, ssh_port=kwargs["port"])

    async def connect_address(self) -> None:
        """Connect straight to a server address with a token, or a server user's password."""
        from pathlib import Path

        from mcp_remote.client import connect_address

        address = (self.address.value or "").strip()
        try:
            roots = Path(self.config.server_tls_cert).expanduser().read_bytes() if self.config.server_tls_cert else None
            backend = await run.io_bound(connect_address, address, self.secret.value or "",
                                         (self.server_user.value or "").strip(), roots)
        except Exception as exc:
            ui.notify(f"Could not connect to {address or 'the server'}: {exc}", type="negative", multi_line=True)
            return
        await self._use(backend, address, server_address=address)

    async def _use(self, backend, where: str, **remember) -> None:
        """Switch to *backend*, remember how it was reached (in the project's remote_config.json), refresh."""
        from mcp_remote.config import save_project_config

        old = self.state.backend
        self.state.use_backend(backend)
        await run.io_bound(old.close)
        ui.notify(f"Connected to {where}.", type="positive")
        try:
            await run.io_bound(save_project_config, self.state.folder, **remember)
        except Exception as exc:  # the connection works; only the remembering failed
            ui.notify(f"Connected, but the settings were not saved in the project: {exc}", type="warning")
        await self.show_usage()
        await self.list_server_models()
        await self.on_change()

    async def list_server_models(self) -> None:
        """The server's user and shared models, for downloading (none while on this computer)."""
        backend = self.state.backend
        names = []
        if backend.kind == "remote":
            try:
                names = [m.name for m in await run.io_bound(backend.list_models) if m.scope != "builtin"]
            except Exception as exc:
                ui.notify(f"Could not list the server's models: {exc}", type="warning")
        self.server_models.set_options(names, value=names[0] if names else None)

    async def download_model(self) -> None:
        """Copy the chosen server model (weights and sidecar) into this computer's model folder."""
        from .transfer_view import call_with_progress

        name, backend = self.server_models.value, self.state.backend
        if backend.kind != "remote" or not name:
            ui.notify("Connect to a server and pick one of its models first.", type="warning")
            return
        try:
            path = await call_with_progress(backend.download_model, name, title=f"Downloading {name}")
        except Exception as exc:
            ui.notify(f"Could not download {name}: {exc}", type="negative", multi_line=True)
            return
        ui.notify(f"Downloaded {name} to {path}; it is listed when you use this computer.", type="positive",
                  multi_line=True)

    async def ask_trust(self, host_key) -> bool:
        from mcp_remote.tunnel import trust_host_key

        with ui.dialog() as dialog, ui.card():
            ui.label(f"First connection to {host_key.host}. Check that its host key fingerprint is:")
            ui.label(f"{host_key.key_type} {host_key.fingerprint}").classes("font-mono")
            with ui.row():
                ui.button("Trust and connect", on_click=lambda: dialog.submit(True)).mark("trust-host")
                ui.button("Cancel", on_click=lambda: dialog.submit(False)).props("flat")
        if not await dialog:
            return False
        await run.io_bound(trust_host_key, host_key)
        return True

    async def disconnect(self) -> None:
        old = self.state.backend
        if old.kind == "local":
            ui.notify("Already using this computer.")
            return
        self.state.use_backend(LocalBackend())
        await run.io_bound(old.close)
        self.usage.text = ""
        await self.list_server_models()
        ui.notify("Using this computer.")
        await self.on_change()

    async def show_usage(self) -> None:
        try:
            u = await run.io_bound(self.state.backend.usage)
        except Exception as exc:
            self.usage.text = f"Storage: unknown ({exc})"
            return
        self.usage.text = f"Storage used: {human_bytes(u.bytes_used)} in {u.files} file(s) of {human_bytes(u.quota_bytes)}"

    async def clear(self) -> None:
        try:
            await run.io_bound(self.state.backend.clear_training_files)
        except Exception as exc:
            ui.notify(f"Could not clear: {exc}", type="negative")
            return
        ui.notify("Training files cleared (models are kept).")
        await self.show_usage()
