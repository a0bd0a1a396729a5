"""``remote_config.json``: where the server listens and keeps files, and how a client reaches it.

One file serves both sides; each reads the keys it needs. It is looked for at the path given,
else ``$MULTICELLPOSE_REMOTE_CONFIG``, else ``./remote_config.json``, else
``~/.multicellpose/remote_config.json``; with none, the defaults below apply.
``remote_config.example.json`` in the repository lists every key.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic.dataclasses import dataclass as pdataclass

from mcp_core.atomic import atomic_write_text
from mcp_core.backend import default_home
from mcp_core.errors import ParameterError

CONFIG_NAME = "remote_config.json"
GiB = 1 << 30
#: What carries an SSH tunnel's port: OpenSSH's ssh, asyncssh, or ssh when it can and asyncssh else.
Forwarder = Literal["auto", "openssh", "asyncssh"]


@pdataclass
class RemoteConfig:
    """Settings of a MultiCellPose server and of the clients that reach it."""

    server_bind: str = Field("127.0.0.1:50051", description="Address the server listens on: host:port or unix:/path.")
    server_storage_root: str = Field("", description="Folder of per-user storage, tokens and jobs; ~/.multicellpose/server when empty.")
    server_address: str = Field("127.0.0.1:50051", description="Address a client dials directly (no SSH): host:port or unix:/path.")
    ssh_host: str = Field("", description="SSH host (a ~/.ssh/config alias works) the client tunnels through.")
    ssh_port: int = Field(22, ge=1, le=65535)
    ssh_local_port: int = Field(0, ge=0, le=65535, description="Local end of the tunnel; 0 picks a free port.")
    ssh_remote_port: int = Field(50051, ge=1, le=65535, description="Port of the server on the SSH host.")
    ssh_remote_bind: str = Field("127.0.0.1", description="Host (seen from the SSH host) the server listens on, or a UNIX socket path.")
    ssh_forwarder: Forwarder = Field("auto", description="What forwards the tunnel's port: 'openssh' (the ssh client on PATH, for key or agent logins; much less CPU), 'asyncssh', or 'auto': openssh when it can, else asyncssh.")
    model_root: str = Field("", description="Folder of shared models (admins write); <storage root>/shared_models when empty.")
    replay_root: str = Field("", description="Folder of labelled images mixed into training when replay is asked for.")
    replay_sample_size: int = Field(0, ge=0, description="How many replay images one training job samples; 0 takes all.")
    cpsam_model_path: str = Field("", description="The cpsam weights file on the server (or the folder holding it).")
    server_admins: list[str] = Field(default_factory=list, description="Users allowed to write shared models.")
    quota_bytes: int = Field(50 * GiB, ge=0, description="Storage each user may use.")
    max_upload_bytes: int = Field(8 * GiB, ge=1, description="Largest single file accepted.")
    max_files: int = Field(50_000, ge=1, description="Files each user may store (uploads, dataset entries, job files).")
    job_min_bytes: int = Field(256 << 20, ge=0, description="Least free quota a training or batch job needs to be accepted (the floor of its estimate).")
    max_queued_jobs: int = Field(5, ge=1, description="Jobs one user may have queued or running at once.")
    max_streams_per_user: int = Field(4, ge=1, description="Streaming and long calls (uploads, downloads, job watches, segmentations, model checks, clearing) one user may have open at once.")
    upload_idle_s: float = Field(60.0, gt=0, description="An upload that sends nothing for this long is cut off (it resumes later).")
    token_days: float = Field(30.0, gt=0, description="How long a minted token stays valid.")
    max_tokens_per_user: int = Field(20, ge=1, description="Live tokens per user; minting one more revokes the oldest.")
    token_socket_dir: str = Field("", description="Folder of the token socket, which every OS user of the machine must be able to reach; <storage root>/run when empty.")
    cluster: str = Field("", description="dask cluster batch jobs segment on: local, local:N, slurm or tcp://host:port; in the job's own process when empty.")
    cluster_config: str = Field("", description="JSON file with the 'cluster' section for cluster 'slurm' and train_executor 'slurm'; $MULTICELLPOSE_HOME/cluster.json when empty.")
    train_executor: Literal["", "slurm", "local"] = Field("", description="Where training jobs run: '' in a subprocess of the server, 'slurm' as Slurm jobs through submitit (resources from cluster_config), 'local' through submitit's local executor.")
    server_tls_cert: str = Field("", description="PEM certificate; needed to listen on a non-loopback address.")
    server_tls_key: str = Field("", description="PEM private key of server_tls_cert.")

    def storage_root(self) -> Path:
        """The server's storage folder."""
        return Path(self.server_storage_root).expanduser() if self.server_storage_root else default_home() / "server"

    def shared_models(self) -> Path:
        """The folder of shared models."""
        return Path(self.model_root).expanduser() if self.model_root else self.storage_root() / "shared_models"

    def token_socket(self) -> Path:
        """The local UNIX socket ``multicellpose-server token`` asks for a token on."""
        folder = Path(self.token_socket_dir).expanduser() if self.token_socket_dir else self.storage_root() / "run"
        return folder / "token.sock"


def find_config(path: str | os.PathLike | None = None) -> Path | None:
    """The config file in use: *path*, ``$MULTICELLPOSE_REMOTE_CONFIG``, ``./remote_config.json``, or the home one."""
    if path:
        return Path(path)
    env = os.environ.get("MULTICELLPOSE_REMOTE_CONFIG")
    if env:
        return Path(env)
    for candidate in (Path.cwd() / CONFIG_NAME, default_home() / CONFIG_NAME):
        if candidate.is_file():
            return candidate
    return None


def _read_raw(found: Path) -> dict:
    try:
        raw = json.loads(found.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ParameterError(f"Cannot read the remote config {found}: {exc}.") from exc
    if not isinstance(raw, dict):
        raise ParameterError(f"The remote config {found} must hold a JSON object.")
    return raw


def load_config(path: str | os.PathLike | None = None, project: str | os.PathLike | None = None) -> RemoteConfig:
    """Read the config (see :func:`find_config`); keys starting with ``_`` are comments.

    The *project* folder's ``remote_config.json``, when there is one (the app saves the last connection
    there, :func:`save_project_config`), overrides the keys it holds.

    Raises
    ------
    ParameterError
        When the file named is missing or unreadable, has an unknown key, or a value is invalid.
    """
    found = find_config(path)
    raw = _read_raw(found) if found is not None else {}
    local = Path(project) / CONFIG_NAME if project else None
    if local is not None and local.is_file() and local != found:
        raw, found = {**raw, **_read_raw(local)}, local
    return _checked(raw, found) if found is not None else RemoteConfig()


def _checked(raw: dict, found: Path) -> RemoteConfig:
    """The config of a file's JSON object; keys starting with ``_`` are comments."""
    keys = {f.name for f in dataclasses.fields(RemoteConfig)}
    values = {k: v for k, v in raw.items() if not k.startswith("_")}
    unknown = sorted(set(values) - keys)
    if unknown:
        raise ParameterError(f"The remote config {found} has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(keys))}.")
    try:
        return RemoteConfig(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ParameterError(f"The remote config {found}: {'.'.join(map(str, err['loc']))}: {err['msg']}.") from exc


def save_project_config(project: str | os.PathLike, **values: object) -> Path:
    """Set keys of the *project* folder's ``remote_config.json`` (others kept), and keep the file out of git.

    The file is written atomically, checked as a whole first; the folder's ``.gitignore`` is
    created or extended (atomically) to list it, since it names hosts and ports of the user's own set-up.

    Raises
    ------
    ParameterError
        When a key is unknown or a value is invalid, or the existing file is unreadable.
    """
    path = Path(project) / CONFIG_NAME
    raw = _read_raw(path) if path.is_file() else {}
    raw.update(values)
    _checked(raw, path)
    ignore_in_git(Path(project), CONFIG_NAME)
    atomic_write_text(path, json.dumps(raw, indent=2) + "\n")
    return path


def ignore_in_git(folder: Path, name: str) -> None:
    """List *name* in ``folder/.gitignore`` unless a line there already names it (created if missing)."""
    ignore = folder / ".gitignore"
    text = ignore.read_text("utf-8") if ignore.is_file() else ""
    if any(line.strip() in (name, "/" + name) for line in text.splitlines()):
        return
    atomic_write_text(ignore, text + ("" if not text or text.endswith("\n") else "\n") + f"/{name}\n")


def is_loopback_host(host: str) -> bool:
    """Whether *host* (a name or an address, brackets allowed) only reaches this machine."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback(bind: str) -> bool:
    """Whether a bind address (``host:port`` or ``unix:/path``) reaches only this machine."""
    return bind.startswith("unix:") or is_loopback_host(bind.rsplit(":", 1)[0])
