"""``RemoteBackend``: the :class:`~mcp_core.backend.Backend` protocol over gRPC.

Make one with :func:`mcp_remote.tunnel.connect` (through SSH, the usual way) or directly with
an address and a token. Every call sends the token; errors come back as the same
:class:`~mcp_core.errors.MCPError` classes a LocalBackend raises. Files go up content-addressed
(sha256) and resumably: when the link drops mid-upload the backend reopens its tunnel and goes
on from the last byte the server stored.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from mcp_core.backend import Progress
from mcp_core.catalog import sidecar_path
from mcp_core.digest import sha256_of
from mcp_core.errors import MCPError
from mcp_core.jobs import wait_until_final
from mcp_core.params import (BackendInfo, JobEvent, JobInfo, ModelInfo, SegmentParams, SegmentResult, TrainParams,
                             Usage, to_dict)

from . import codec, packing
from .channel import MAX_MESSAGE_BYTES, open_channel
from .errors import Conflict, Unreachable, from_rpc_error
from .proto import multicellpose_pb2 as pb
from .proto import multicellpose_pb2_grpc as pbg

#: Images per Segment call are grouped to stay under this many bytes (the rest of 64 MiB is headroom).
REQUEST_BYTES = MAX_MESSAGE_BYTES - (8 << 20)
#: The Upload method, called with messages this client serializes itself (see :func:`codec.upload_chunk_bytes`).
UPLOAD_METHOD = "/multicellpose.v1.Transfer/Upload"
#: Seconds a call waits for a dropped link to come back, and between checks of whether the tunnel died meanwhile.
RECOVER_S, RECHECK_S = 15.0, 0.5


class RemoteBackend:
    """A backend on a MultiCellPose server.

    Parameters
    ----------
    address
        ``host:port`` or ``unix:/path`` of the server (the local end of a tunnel).
    token
        The user's access token.
    tunnel
        The SSH tunnel the address belongs to; reopened when the link drops. Closed with the backend.
    root_certificates
        PEM roots when the server uses TLS.
    retries
        How many times a dropped upload or download is resumed.
    """

    kind = "remote"
    computes_here = False

    def __init__(self, address: str, token: str, tunnel: Any = None, root_certificates: bytes | None = None,
                 retries: int = 5) -> None:
        self.address = address
        self.tunnel = tunnel
        self.retries = retries
        self.bytes_sent = 0
        self._token = token
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._channel = open_channel(address, root_certificates)
        self._auth = pbg.AuthStub(self._channel)
        self._server = pbg.ServerStub(self._channel)
        self._transfer = pbg.TransferStub(self._channel)
        self._upload = self._channel.stream_unary(UPLOAD_METHOD, response_deserializer=pb.UploadStatus.FromString)
        self._models = pbg.ModelsStub(self._channel)
        self._segmentation = pbg.SegmentationStub(self._channel)
        self._datasets = pbg.DatasetsStub(self._channel)
        self._jobs = pbg.JobsStub(self._channel)
        self._storage = pbg.StorageStub(self._channel)

    @classmethod
    def login(cls, address: str, user: str, password: str, **kwargs: Any) -> RemoteBackend:
        """Log in with a name and password from the server's password file."""
        channel = open_channel(address, kwargs.get("root_certificates"))
        try:
            reply = pbg.AuthStub(channel).Login(pb.LoginRequest(user=user, password=password), timeout=30)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None
        finally:
            channel.close()
        return cls(address, reply.token, **kwargs)

    # ------------------------------------------------------------------ plumbing
    def _call(self, method: Callable, request: Any, timeout: float | None = 60.0) -> Any:
        try:
            return method(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def _stream(self, method: Callable, request: Any, timeout: float | None = None) -> Iterator[Any]:
        try:
            yield from method(request, metadata=self._metadata, timeout=timeout)
        except grpc.RpcError as err:
            raise from_rpc_error(err) from None

    def _recover(self) -> None:
        """After a dropped link: wait for the channel, reopening the tunnel whenever it is found dead (its end
        may show only after the call failed: the forwarding ssh process exits, or the keepalive gives up)."""
        deadline = time.monotonic() + RECOVER_S
        while True:
            if self.tunnel is not None and not self.tunnel.alive:
                self.tunnel.reopen()
            ready = grpc.channel_ready_future(self._channel)
            try:
                ready.result(timeout=max(min(RECHECK_S, deadline - time.monotonic()), 0.01))
                return
            except grpc.FutureTimeoutError:
                ready.cancel()
                if time.monotonic() >= deadline:
                    raise Unreachable(f"The MultiCellPose server at {self.address} cannot be reached.") from None

    def close(self) -> None:
        """Close the channel and the tunnel."""
        self._channel.close()
        if self.tunnel is not None:
            self.tunnel.close()

    def __enter__(self) -> RemoteBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ identity and info
    def whoami(self) -> tuple[str, bool]:
        """``(user, is admin)`` as the server sees this backend's token."""
        reply = self._call(self._auth.WhoAmI, pb.Empty())
        return reply.user, reply.admin

    def logout(self) -> None:
        """Revoke this backend's token on the server."""
        self._call(self._auth.Logout, pb.Empty())

    def info(self) -> BackendInfo:
        """The server's device, versions and limits."""
        reply = self._call(self._server.Info, pb.Empty())
        return BackendInfo(kind="remote", device=reply.device, versions=dict(reply.versions), host=reply.host,
                           limits={**codec.loads(reply.limits_json, "limits"), "protocol": reply.protocol})

    # ------------------------------------------------------------------ transfer
    def upload(self, path: str | os.PathLike, progress: Progress | None = None) -> str:
        """Upload a file (skipped when the server has it); returns its sha256.

        A dropped link is retried (the tunnel reopened) up to ``retries`` times, resuming from
        the bytes the server already holds. *progress* gets ``(bytes stored, total)``.
        """
        path = Path(path)
        sha, size = sha256_of(path), path.stat().st_size
        report = progress or (lambda done, total: None)
        for attempt in range(self.retries + 1):
            try:
                status = self._transfer.Status(pb.BlobRef(sha256=sha, size=size), metadata=self._metadata, timeout=60)
                report(status.received, size)
                if status.complete:
                    return sha
                reply = self._upload(self._chunks(path, sha, size, status.received, report), metadata=self._metadata)
                if reply.complete:
                    return sha
            except grpc.RpcError as err:
                exc = from_rpc_error(err)
                if not isinstance(exc, Unreachable | Conflict) or attempt == self.retries:
                    raise exc from None
                self._recover()
        raise Unreachable(f"Uploading {path.name} did not finish after {self.retries} retries.")

    def _chunks(self, path: Path, sha: str, size: int, offset: int, report: Progress) -> Iterator[bytes]:
        """The serialized messages of an upload from byte *offset* on."""
        with open(path, "rb") as fh:
            fh.seek(offset)
            yield pb.UploadChunk(sha256=sha, size=size, offset=offset).SerializeToString()
            while data := fh.read(codec.CHUNK_BYTES):
                yield codec.upload_chunk_bytes(offset, data)
                offset += len(data)
                self.bytes_sent += len(data)
                report(offset, size)

    def download(self, sha256: str, dest: str | os.PathLike, progress: Progress | None = None) -> Path:
        """Download one of this user's files by sha256 into *dest* (resumed after a dropped link; verified)."""
        def stream(have: int) -> Iterator[Any]:
            return self._transfer.Download(pb.DownloadRequest(sha256=sha256, offset=have), metadata=self._metadata)

        return self._receive(stream, Path(dest), progress, sha256)

    def download_model(self, name: str, folder: str | os.PathLike | None = None, progress: Progress | None = None
                       ) -> Path:
        """Copy a user or shared model of the server (state dict and sidecar) into a local model folder.

        Parameters
        ----------
        name
            The model's name on the server.
        folder
            Where it goes; ``~/.multicellpose/models`` (:func:`mcp_core.backend.default_home`) by default.
            A free name is chosen there (``name_2.pth`` when ``name.pth`` is taken).
        progress
            ``(bytes received, total)`` of the state dict.

        Returns
        -------
        Path
            The local ``.pth`` file (its ``.json`` sidecar beside it).
        """
        from mcp_core.backend import default_home
        from mcp_core.catalog import ModelCatalog

        dest = ModelCatalog(Path(folder) if folder else default_home() / "models").unique_path(name)

        def stream(file: str) -> Callable[[int], Iterator[Any]]:
            return lambda have: self._models.Download(pb.ModelFileRequest(name=name, file=file, offset=have),
                                                      metadata=self._metadata)

        self._receive(stream("weights"), dest, progress)
        try:
            self._receive(stream("sidecar"), sidecar_path(dest), None)
        except BaseException:
            dest.unlink(missing_ok=True)  # a state dict without its sidecar would pass for another model
            raise
        return dest

    def _receive(self, open_stream: Callable[[int], Iterator[Any]], dest: Path, progress: Progress | None,
                 sha256: str = "") -> Path:
        """Write a chunked download into *dest* atomically, resuming after a dropped link.

        *open_stream(offset)* starts the stream at a byte offset. The file is checked against *sha256*,
        or else the sha256 the stream's chunks carry.
        """
        from mcp_core.atomic import atomic_write

        part = dest.with_name(f".{dest.name}.part")
        for attempt in range(self.retries + 1):
            have = part.stat().st_size if part.exists() else 0
            try:
                with open(part, "ab") as fh:
                    for chunk in open_stream(have):
                        sha256 = getattr(chunk, "sha256", "") or sha256
                        fh.write(chunk.data)
                        if progress:
                            progress(chunk.offset + len(chunk.data), chunk.size)
                break
            except grpc.RpcError as err:
                exc = from_rpc_error(err)
                if not isinstance(exc, Unreachable) or attempt == self.retries:
                    part.unlink(missing_ok=True)
                    raise exc from None
                self._recover()
        if sha256_of(part) != sha256:
            part.unlink(missing_ok=True)
            raise MCPError(f"The download of {dest.name} does not match its sha256; try again.")
        with open(part, "rb") as fin, atomic_write(dest) as fout:
            while block := fin.read(1 << 22):
                fout.write(block)
        part.unlink()
        return dest

    def _dataset(self, name: str, files: Sequence[tuple[str, Path]], progress: Progress | None,
                 origins: Sequence[str] = ()) -> str:
        total = sum(p.stat().st_size for _, p in files)
        done = 0
        entries = []
        for i, (fname, path) in enumerate(files):
            size = path.stat().st_size
            sha = self.upload(path, None if progress is None else (lambda d, t, base=done: progress(base + d, total)))
            done += size
            entries.append(pb.DatasetFile(name=fname, sha256=sha, size=size, origin=origins[i] if origins else ""))
        return self._call(self._datasets.Create, pb.CreateDatasetRequest(name=name, files=entries)).dataset_id

    # ------------------------------------------------------------------ models
    def list_models(self) -> list[ModelInfo]:
        """Builtin, shared and this user's models on the server."""
        return [codec.from_model_msg(m) for m in self._call(self._models.List, pb.Empty()).models]

    def add_model(self, path: str | os.PathLike, progress: Progress | None = None) -> ModelInfo:
        """Upload a model file (with its sidecar when present) into this user's models."""
        return self._register(path, "user", progress)

    def add_shared_model(self, path: str | os.PathLike, progress: Progress | None = None) -> ModelInfo:
        """Upload a model for every user of the server (admins only)."""
        return self._register(path, "shared", progress)

    def _register(self, path: str | os.PathLike, scope: str, progress: Progress | None) -> ModelInfo:
        path = Path(path)
        if not path.is_file():
            from mcp_core.errors import ModelError

            raise ModelError(f"Model file {path} does not exist.")
        weights = self.upload(path, progress)
        side = sidecar_path(path)
        sidecar = pb.BlobRef(sha256=self.upload(side), size=side.stat().st_size) if side.is_file() else pb.BlobRef()
        request = pb.RegisterModelRequest(name=path.stem, scope=scope, sidecar=sidecar,
                                          weights=pb.BlobRef(sha256=weights, size=path.stat().st_size))
        return codec.from_model_msg(self._call(self._models.Register, request, timeout=300))

    def download_weights(self, name: str = "cpsam", progress: Progress | None = None) -> ModelInfo:
        """Fetch cellpose's pretrained weights *name* on the server (cellpose's own download path).

        *progress* hears ``(bytes, total)`` of the server's download. Raises ``ModelError`` when the
        server cannot download them (offline: the message says where to copy the file there).
        """
        for msg in self._stream(self._models.DownloadWeights, pb.WeightsRequest(name=name)):
            if progress is not None:
                progress(msg.done, msg.total)
            if msg.HasField("model"):
                return codec.from_model_msg(msg.model)
        raise MCPError(f"The server ended the download of the {name} weights without saying it finished.")

    def delete_model(self, name: str, scope: str = "user") -> None:
        """Delete one of this user's models (or, for admins, a shared one)."""
        self._call(self._models.Delete, pb.ModelRef(name=name, scope=scope))

    # ------------------------------------------------------------------ segmentation
    def segment(self, images: Sequence[np.ndarray], params: SegmentParams) -> list[SegmentResult]:
        """Segment ``(Y, X, C)`` images on the server (sent in groups that fit one message)."""
        params_json = codec.dumps(to_dict(params))
        out: list[SegmentResult] = []
        group: list[pb.NDArray] = []
        size = 0
        for img in images:
            msg = codec.to_array_msg(np.asarray(img))
            if group and size + len(msg.data) > REQUEST_BYTES:
                out += self._segment_group(group, params_json)
                group, size = [], 0
            group.append(msg)
            size += len(msg.data)
        if group:
            out += self._segment_group(group, params_json)
        return out

    def _segment_group(self, group: list[pb.NDArray], params_json: str) -> list[SegmentResult]:
        request = pb.SegmentRequest(images=group, params_json=params_json)
        return [codec.from_result_msg(m) for m in self._stream(self._segmentation.Segment, request)]

    # ------------------------------------------------------------------ jobs
    def submit_training(self, dataset: str | os.PathLike, params: TrainParams, progress: Progress | None = None
                        ) -> JobInfo:
        """Upload a folder of labelled images (pickle-free) and start training on the server."""
        replay_id = ""
        with tempfile.TemporaryDirectory(prefix="mcp-upload-") as tmp:
            files, names, colors = packing.pack_training(dataset, Path(tmp) / "train", params.class_names,
                                                         params.class_colors)
            dataset_id = self._dataset(Path(dataset).name, files, progress)
            if params.replay_dir and params.replay_fraction > 0:
                replay, _, _ = packing.pack_training(params.replay_dir, Path(tmp) / "replay", names, colors)
                replay_id = self._dataset(Path(params.replay_dir).name, replay, progress)
        sent = dataclasses.replace(params, replay_dir=None,
                                   **({"class_names": names, "class_colors": colors} if names else {}))
        request = pb.TrainRequest(dataset_id=dataset_id, params_json=codec.dumps(to_dict(sent)),
                                  replay_dataset_id=replay_id)
        return codec.from_job_msg(self._call(self._jobs.SubmitTraining, request))

    def submit_batch(self, paths: Sequence[str | os.PathLike], params: SegmentParams,
                     progress: Progress | None = None) -> JobInfo:
        """Upload every frame of the images (as plain arrays) and segment them in a server job.

        When the job is done, :meth:`fetch_predictions` writes the ``_pred.npy`` files beside
        the images here.
        """
        with tempfile.TemporaryDirectory(prefix="mcp-upload-") as tmp:
            files, origin = packing.pack_frames(paths, Path(tmp))
            notes = [json.dumps({"path": path, "frame": frame}) for _, path, frame in origin]
            dataset_id = self._dataset("batch", files, progress, notes)
        request = pb.BatchRequest(dataset_id=dataset_id, params_json=codec.dumps(to_dict(params)))
        return codec.from_job_msg(self._call(self._jobs.SubmitBatch, request))

    def fetch_predictions(self, job_id: str, folder: str | os.PathLike | None = None) -> list[Path]:
        """Write the predictions of a finished batch job as ``_pred.npy`` beside each image (or in *folder*).

        Works after a restart of the app too: the server keeps where each uploaded frame came from.
        """
        from mcp_core.predictions import save_prediction

        params = SegmentParams(**self.job(job_id).params)  # the thresholds go into each file
        written = []
        for msg in self._stream(self._jobs.Predictions, pb.PredictionRequest(job_id=job_id)):
            try:
                note = json.loads(msg.origin)
                path, frame = str(note["path"]), str(note["frame"])
            except (ValueError, KeyError, TypeError):
                continue  # not uploaded by submit_batch: nowhere to put it
            written.append(save_prediction(codec.from_result_msg(msg.result), path, frame, folder, params))
        return written

    def job(self, job_id: str) -> JobInfo:
        """Current state of a job."""
        return codec.from_job_msg(self._call(self._jobs.Get, pb.JobRef(job_id=job_id)))

    def jobs(self) -> list[JobInfo]:
        """This user's jobs on the server, oldest first."""
        return [codec.from_job_msg(j) for j in self._call(self._jobs.List, pb.Empty()).jobs]

    def events(self, job_id: str, since: int = 0) -> list[JobEvent]:
        """Events of a job with ``seq > since``."""
        reply = self._call(self._jobs.Events, pb.EventsRequest(job_id=job_id, since=since))
        return [codec.from_event_msg(e) for e in reply.events]

    def watch(self, job_id: str, since: int = 0) -> Iterator[JobEvent]:
        """Events as they come until the job ends (re-attach with the last ``seq`` seen)."""
        for msg in self._stream(self._jobs.Watch, pb.EventsRequest(job_id=job_id, since=since, follow=True)):
            yield codec.from_event_msg(msg)

    def wait(self, job_id: str, timeout: float | None = None) -> JobInfo:
        """Block until a job reaches a final state (or *timeout* seconds pass)."""
        return wait_until_final(self.job, job_id, timeout, interval=0.2)

    def cancel(self, job_id: str) -> JobInfo:
        """Stop a job (a queued one at once; training keeps its last checkpoint)."""
        return codec.from_job_msg(self._call(self._jobs.Cancel, pb.JobRef(job_id=job_id)))

    # ------------------------------------------------------------------ storage
    def usage(self) -> Usage:
        """This user's storage on the server and the quota."""
        reply = self._call(self._storage.Usage, pb.Empty())
        return Usage(bytes_used=reply.bytes_used, quota_bytes=reply.quota_bytes, files=reply.files)

    def stored_files(self) -> list[tuple[str, str, int]]:
        """``(kind, name, size)`` of this user's uploads and dataset files on the server."""
        return [(f.kind, f.name, f.size) for f in self._call(self._storage.List, pb.Empty()).files]

    def clear_training_files(self) -> Usage:
        """Delete this user's uploads, datasets and job files on the server (models stay)."""
        reply = self._call(self._storage.ClearTrainingFiles, pb.Empty(), timeout=300)
        return Usage(bytes_used=reply.bytes_used, quota_bytes=reply.quota_bytes, files=reply.files)


def connect_address(address: str, secret: str, user: str = "", root_certificates: bytes | None = None
                    ) -> RemoteBackend:
    """A backend on a server reached directly at *address* (``host:port``, e.g. the local end of ``ssh -L``).

    Parameters
    ----------
    address
        ``host:port`` or ``unix:/path``. A non-loopback address needs *root_certificates* (TLS): the token
        or password would otherwise cross the network in clear text.
    secret
        The access token (from ``multicellpose-server token``), or the password of *user*.
    user
        A name in the server's password file: *secret* is then its password.
    root_certificates
        PEM roots of the server's TLS certificate.

    Raises
    ------
    ParameterError
        When the address is malformed, or not loopback and without TLS, or no secret is given.
    AuthError
        When the token or password is refused.
    Unreachable
        When no server answers at the address.
    """
    from mcp_core.errors import ParameterError

    from .config import is_loopback

    address = address.strip()
    host, sep, port = address.rpartition(":")
    if not address.startswith("unix:") and not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ParameterError(f"The server address {address!r} must be host:port (e.g. 127.0.0.1:50051) or unix:/path.")
    if not secret:
        raise ParameterError("Enter the access token (or the password of the user).")
    if root_certificates is None and not is_loopback(address):
        raise ParameterError(f"{address} is not on this machine and the connection has no TLS certificate: the token "
                             "would travel in clear. Tunnel it (ssh -L PORT:127.0.0.1:PORT host) and connect to "
                             "127.0.0.1:PORT, or set server_tls_cert in remote_config.json.")
    if user:
        return RemoteBackend.login(address, user, secret, root_certificates=root_certificates)
    backend = RemoteBackend(address, secret, root_certificates=root_certificates)
    try:
        backend.whoami()  # the token is checked now, not at the first real call
    except BaseException:
        backend.close()
        raise
    return backend

