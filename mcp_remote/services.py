"""The gRPC services of a MultiCellPose server (see ``proto/multicellpose.proto``).

Every method takes the caller's user from the bearer token (:meth:`Site.user`), works only
inside that user's storage, and turns a :class:`~mcp_core.errors.MCPError` into a gRPC status
with the error's class in the ``mcp-error`` trailer. Segmentation, training and batch
inference are the :class:`~mcp_core.backend.LocalBackend`'s: this module has none of its own.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import time
from collections.abc import Callable
from typing import Any

import grpc
from pydantic import ValidationError

from mcp_core.catalog import safe_name
from mcp_core.errors import MCPError
from mcp_core.params import SegmentParams, TrainParams, to_dict

from . import codec
from .auth import AuthError, check_user_name
from .errors import Forbidden, InvalidRequest, Throttled, status_of
from .job_queue import Submission
from .prediction_files import prediction_result
from .proto import multicellpose_pb2 as pb
from .proto import multicellpose_pb2_grpc as pbg
from .site import Site
from .storage import UserStorage, check_sha256

CHUNK_BYTES = 4 << 20


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        name, message = "ParameterError", f"Parameter {'.'.join(map(str, err['loc']))}: {err['msg']}."
        code = grpc.StatusCode.INVALID_ARGUMENT
    else:
        name, message, code = type(exc).__name__, str(exc), status_of(exc)
    context.set_trailing_metadata((("mcp-error", name),))
    context.abort(code, message)


def rpc(method: Callable) -> Callable:
    """Run a servicer method, answering project errors with their status (streaming methods too)."""
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def stream(self, request, context):
            try:
                yield from method(self, request, context)
            except (MCPError, ValidationError) as exc:
                _abort(context, exc)
        return stream

    @functools.wraps(method)
    def unary(self, request, context):
        try:
            return method(self, request, context)
        except (MCPError, ValidationError) as exc:
            _abort(context, exc)
    return unary


class _Service:
    def __init__(self, site: Site) -> None:
        self.site = site

    def user(self, context: grpc.ServicerContext) -> str:
        return self.site.user(dict(context.invocation_metadata()).get("authorization", ""))


# ----------------------------------------------------------------------------------- auth
class AuthService(_Service, pbg.AuthServicer):
    @rpc
    def Login(self, request, context):
        peer = (context.peer() or "unknown").rsplit(":", 1)[0]  # the address, not the connection's port
        user = request.user
        try:
            check_user_name(user)
        except MCPError:
            raise AuthError("Wrong user name or password.") from None
        try:
            self.site.throttle.check(user)
            self.site.peer_throttle.check(peer)
        except AuthError as exc:
            raise Throttled(str(exc)) from None
        if not self.site.passwords.verify(user, request.password):
            self.site.throttle.failed(user)
            self.site.peer_throttle.failed(peer)
            raise AuthError("Wrong user name or password.")
        self.site.throttle.succeeded(user)
        token, expires = self.site.tokens.mint(user, via="password")
        return pb.LoginReply(token=token, user=user, expires=expires)

    @rpc
    def WhoAmI(self, request, context):
        user = self.user(context)
        return pb.Identity(user=user, admin=user in self.site.admins)

    @rpc
    def Logout(self, request, context):
        self.user(context)
        self.site.tokens.revoke(self.site.bearer(dict(context.invocation_metadata()).get("authorization", "")))
        return pb.Empty()


class ServerService(_Service, pbg.ServerServicer):
    @rpc
    def Info(self, request, context):
        self.user(context)
        info = self.site.shared.info()
        return pb.ServerInfo(protocol="multicellpose.v1", device=info.device, versions=info.versions, host=info.host,
                             limits_json=json.dumps(self.site.limits()))


# ------------------------------------------------------------------------------- transfer
class TransferService(_Service, pbg.TransferServicer):
    @rpc
    def Status(self, request, context):
        store = self.site.storage(self.user(context))
        store.check_upload(request.sha256, request.size)
        received, complete = store.status(request.sha256, request.size)
        return pb.UploadStatus(sha256=request.sha256, size=request.size, received=received, complete=complete)

    @rpc
    def Upload(self, request_iterator, context):
        store = self.site.storage(self.user(context))
        first = next(request_iterator, None)
        if first is None:
            raise InvalidRequest("An upload must name its file (sha256 and size) in its first message.")
        sha, size = first.sha256, first.size
        store.check_upload(sha, size)
        received, complete = store.status(sha, size)
        if complete:
            return pb.UploadStatus(sha256=sha, size=size, received=size, complete=True)
        held = size - received
        store.reserve(held)
        try:
            for msg in _chain(first, request_iterator):
                if msg.sha256 not in ("", sha) or msg.size not in (0, size):
                    raise InvalidRequest("An upload stream must carry one file only.")
                if msg.data:
                    received = store.write_chunk(sha, size, msg.offset, msg.data)
                    held -= len(msg.data)
        finally:
            store.release(max(held, 0))
            store.save_tally()
        if received == size:
            store.finish(sha, size)
        return pb.UploadStatus(sha256=sha, size=size, received=received, complete=received == size)

    @rpc
    def Download(self, request, context):
        store = self.site.storage(self.user(context))
        path = store.blob(request.sha256)
        size = path.stat().st_size
        if not 0 <= request.offset <= size:
            raise InvalidRequest(f"Offset {request.offset} is outside the file ({size} bytes).")
        with open(path, "rb") as fh:
            fh.seek(request.offset)
            offset = request.offset
            while data := fh.read(CHUNK_BYTES):
                yield pb.DownloadChunk(offset=offset, size=size, data=data)
                offset += len(data)


def _chain(first, rest):
    yield first
    yield from rest


# --------------------------------------------------------------------------------- models
class ModelsService(_Service, pbg.ModelsServicer):
    @rpc
    def List(self, request, context):
        user = self.user(context)
        return pb.ModelList(models=[codec.to_model_msg(m) for m in self.site.models(user)])

    @rpc
    def Register(self, request, context):
        user = self.user(context)
        scope = request.scope or "user"
        if scope not in ("user", "shared"):
            raise InvalidRequest(f"A model's scope is 'user' or 'shared', not {scope[:40]!r}.")
        if scope == "shared" and user not in self.site.admins:
            raise Forbidden("Only the server's admins may add shared models.")
        store = self.site.storage(user)
        weights = store.blob(check_sha256(request.weights.sha256))
        sidecar = store.blob(check_sha256(request.sidecar.sha256)) if request.sidecar.sha256 else None
        backend = self.site.shared if scope == "shared" else self.site.user_backend(user)
        return codec.to_model_msg(self.site.register_model(store, backend, safe_name(request.name or "model"),
                                                           weights, sidecar, scope))

    @rpc
    def Delete(self, request, context):
        user = self.user(context)
        scope = request.scope or "user"
        if scope == "shared" and user not in self.site.admins:
            raise Forbidden("Only the server's admins may delete shared models.")
        self.site.delete_model(user, request.name, scope)
        return pb.Empty()


class SegmentationService(_Service, pbg.SegmentationServicer):
    @rpc
    def Segment(self, request, context):
        user = self.user(context)
        params = SegmentParams(**codec.loads(request.params_json, "segmentation parameters"))
        images = [codec.from_array_msg(m, f"image {i + 1}") for i, m in enumerate(request.images)]
        if not images:
            raise InvalidRequest("No images to segment.")
        for result in self.site.segment(user, images, params):
            yield codec.to_result_msg(result)


# ------------------------------------------------------------------------------- datasets
def _dataset_msg(record: dict) -> pb.Dataset:
    return pb.Dataset(dataset_id=record["dataset_id"], name=record["name"], created=record["created"],
                      files=[pb.DatasetFile(name=f["name"], sha256=f["sha256"], size=f["size"], origin=f.get("origin", ""))
                             for f in record["files"]])


class DatasetsService(_Service, pbg.DatasetsServicer):
    @rpc
    def Create(self, request, context):
        store = self.site.storage(self.user(context))
        return _dataset_msg(store.create_dataset(request.name, [(f.name, f.sha256) for f in request.files],
                                                 [f.origin for f in request.files]))

    @rpc
    def List(self, request, context):
        store = self.site.storage(self.user(context))
        return pb.DatasetList(datasets=[_dataset_msg(r) for r in store.list_datasets()])

    @rpc
    def Delete(self, request, context):
        self.site.storage(self.user(context)).delete_dataset(request.dataset_id)
        return pb.Empty()


# ----------------------------------------------------------------------------------- jobs
class JobsService(_Service, pbg.JobsServicer):
    @rpc
    def SubmitTraining(self, request, context):
        user = self.user(context)
        store = self.site.storage(user)
        folder = store.dataset(request.dataset_id)
        store.check_room()
        params = TrainParams(**codec.loads(request.params_json, "training parameters"))
        for field in ("test_dir", "save_path", "replay_dir"):
            if getattr(params, field):
                raise InvalidRequest(f"Parameter {field} cannot name a server folder; upload the data as a dataset.")
        if params.device not in (None, "cpu", "cuda") and not str(params.device).startswith("cuda:"):
            raise InvalidRequest(f"Parameter device must be cpu or cuda[:N], not {params.device[:20]!r}.")
        base = self.site.base_model_spec(user, params.base_model)
        replay = self.site.replay_folder(store, request.replay_dataset_id, params)
        local = TrainParams(**{**to_dict(params), "base_model": base, "replay_dir": replay})
        public_params = to_dict(params)

        def start(backend):
            return backend.submit_training(folder, local)

        return codec.to_job_msg(self.site.queue.submit(Submission(user, "train", public_params, str(store.home),
                                                                  None, start)))

    @rpc
    def SubmitBatch(self, request, context):
        user = self.user(context)
        store = self.site.storage(user)
        folder = store.dataset(request.dataset_id)
        store.check_room()
        params = SegmentParams(**codec.loads(request.params_json, "segmentation parameters"))
        backend, info = self.site.resolve_model(user, params.model)
        paths = self.site.dataset_images(folder)

        def start(b):
            return b.submit_batch(paths, dataclasses.replace(params, model=info.name))

        home, models_dir = self.site.home_of(backend)
        return codec.to_job_msg(self.site.queue.submit(Submission(user, "batch", to_dict(params), home, models_dir,
                                                                  start)))

    @rpc
    def Get(self, request, context):
        return codec.to_job_msg(self.site.queue.job(self.user(context), request.job_id))

    @rpc
    def List(self, request, context):
        return pb.JobList(jobs=[codec.to_job_msg(j) for j in self.site.queue.jobs(self.user(context))])

    @rpc
    def Events(self, request, context):
        events = self.site.queue.events(self.user(context), request.job_id, request.since)
        return pb.JobEvents(events=[codec.to_event_msg(e) for e in events])

    @rpc
    def Watch(self, request, context):
        user = self.user(context)
        since = request.since
        while context.is_active():
            for event in self.site.queue.events(user, request.job_id, since):
                since = event.seq
                yield codec.to_event_msg(event)
            if not request.follow or self.site.queue.job(user, request.job_id).state in self.site.final_states:
                if not self.site.queue.events(user, request.job_id, since):
                    return
            else:
                time.sleep(0.2)

    @rpc
    def Cancel(self, request, context):
        return codec.to_job_msg(self.site.queue.cancel(self.user(context), request.job_id))

    @rpc
    def Predictions(self, request, context):
        user = self.user(context)
        for path, image, frame, origin in self.site.predictions(user, request.job_id):
            result = prediction_result(path, image=image, frame=frame)
            yield pb.Prediction(image=image, frame=frame, result=codec.to_result_msg(result), origin=origin)


# -------------------------------------------------------------------------------- storage
def _usage_msg(store: UserStorage) -> pb.StorageUsage:
    t = store.tally()
    return pb.StorageUsage(bytes_used=t["bytes"], quota_bytes=store.quota_bytes, files=t["files"])


class StorageService(_Service, pbg.StorageServicer):
    @rpc
    def Usage(self, request, context):
        return _usage_msg(self.site.storage(self.user(context)))

    @rpc
    def List(self, request, context):
        store = self.site.storage(self.user(context))
        return pb.StoredFiles(files=[pb.StoredFile(kind=k, name=n, size=s) for k, n, s in store.listing()])

    @rpc
    def ClearTrainingFiles(self, request, context):
        user = self.user(context)
        self.site.clear_training_files(user)
        return _usage_msg(self.site.storage(user))


SERVICES: list[tuple[type, Callable[[Any, grpc.Server], None]]] = [
    (AuthService, pbg.add_AuthServicer_to_server),
    (ServerService, pbg.add_ServerServicer_to_server),
    (TransferService, pbg.add_TransferServicer_to_server),
    (ModelsService, pbg.add_ModelsServicer_to_server),
    (SegmentationService, pbg.add_SegmentationServicer_to_server),
    (DatasetsService, pbg.add_DatasetsServicer_to_server),
    (JobsService, pbg.add_JobsServicer_to_server),
    (StorageService, pbg.add_StorageServicer_to_server),
]


def add_services(server: grpc.Server, site: Site) -> None:
    """Add every MultiCellPose service of *site* to a gRPC server."""
    for cls, add in SERVICES:
        add(cls(site), server)

