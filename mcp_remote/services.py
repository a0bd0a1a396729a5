"""The gRPC services of a MultiCellPose server (see ``proto/multicellpose.proto``).

Every method takes the caller's user from the bearer token (:meth:`Site.user`), works only
inside that user's storage, and turns a :class:`~mcp_core.errors.MCPError` into a gRPC status
with the error's class in the ``mcp-error`` trailer. No message names a server path: absolute
paths are cut to their last part, and any other failure is answered ``INTERNAL`` with one
sentence (the traceback goes to the server's log). Segmentation, training and batch inference
are the :class:`~mcp_core.backend.LocalBackend`'s: this module has none of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from pydantic import ValidationError

from mcp_core.catalog import safe_name
from mcp_core.digest import sha256_of
from mcp_core.errors import MCPError
from mcp_core.jobs import FINAL_STATES
from mcp_core.params import SegmentParams, TrainParams, to_dict

from . import codec
from .auth import AuthError, check_user_name
from .errors import Forbidden, InvalidRequest, public_message, status_of
from .job_queue import Submission
from .prediction_files import prediction_result
from .proto import multicellpose_pb2 as pb
from .proto import multicellpose_pb2_grpc as pbg
from .site import Site
from .storage import UserStorage, check_name

LOG = logging.getLogger("mcp_remote.server")


def _abort(context: grpc.ServicerContext, exc: Exception) -> None:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        name, message = "ParameterError", f"Parameter {'.'.join(map(str, err['loc']))}: {err['msg']}."
        code = grpc.StatusCode.INVALID_ARGUMENT
    elif isinstance(exc, MCPError):
        name, message, code = type(exc).__name__, str(exc), status_of(exc)
    else:
        LOG.exception("A call failed")
        name, message = "RemoteError", "The server failed while answering this call; its log has the details."
        code = grpc.StatusCode.INTERNAL
    context.set_trailing_metadata((("mcp-error", name),))
    context.abort(code, public_message(message))


def rpc(method: Callable) -> Callable:
    """Run a servicer method, answering every error with a status and one sentence (streaming methods too).

    A call the client has cancelled (its request stream raises :class:`grpc.RpcError`) just ends.
    """
    if inspect.isgeneratorfunction(method):
        @functools.wraps(method)
        def stream(self, request, context):
            try:
                yield from method(self, request, context)
            except grpc.RpcError:
                return
            except Exception as exc:
                _abort(context, exc)
        return stream

    @functools.wraps(method)
    def unary(self, request, context):
        try:
            return method(self, request, context)
        except grpc.RpcError:
            return None
        except Exception as exc:
            _abort(context, exc)
    return unary


def params_of(cls: type, text: str, what: str) -> Any:
    """A parameter dataclass from the JSON of a ``params_json`` field.

    Raises
    ------
    InvalidRequest
        When the JSON names a key *cls* does not have.
    ParameterError, ValidationError
        When it is not a JSON object or a value is invalid.
    """
    values = codec.loads(text, what)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InvalidRequest(f"The field params_json has unknown {what} key(s) {', '.join(map(repr, unknown))[:300]}; "
                             f"known: {', '.join(sorted(known))}.")
    return cls(**values)


def _idle_cut(messages: Iterator, context: grpc.ServicerContext, idle_s: float) -> Iterator:
    """*messages*, ending the call when the client sends nothing for *idle_s* seconds.

    Only the time spent waiting for the next message counts, not the time the caller spends on
    one. One watchdog thread per stream, not a timer per message: starting a thread waits for it
    to run, about 0.1-0.5 ms for each message of the stream.
    """
    waiting_since: list[float | None] = [time.monotonic()]  # None while the caller has a message
    done = threading.Event()

    def watch() -> None:
        while True:
            since = waiting_since[0]
            left = idle_s if since is None else since + idle_s - time.monotonic()
            if left <= 0:
                context.cancel()
                return
            if done.wait(left):
                return

    threading.Thread(target=watch, name="upload-idle-cut", daemon=True).start()
    try:
        while True:
            waiting_since[0] = time.monotonic()
            try:
                msg = next(messages)
            except StopIteration:
                return
            waiting_since[0] = None
            yield msg
    finally:
        done.set()


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
        token, expires = self.site.login(user, request.password, peer)
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
        user = self.user(context)
        store = self.site.storage(user)
        messages = _idle_cut(request_iterator, context, self.site.config.upload_idle_s)
        with self.site.stream(user), contextlib.closing(messages):
            first = next(messages, None)
            if first is None:
                raise InvalidRequest("An upload must name its file (fields sha256 and size) in its first message.")
            sha, size = first.sha256, first.size  # fixed for the whole stream
            store.check_upload(sha, size)
            received, complete = store.status(sha, size)
            if complete:
                return pb.UploadStatus(sha256=sha, size=size, received=size, complete=True)
            hold = store.begin_upload(sha, size)
            try:
                digest = store.partial_digest(sha)  # each byte hashed once, as it is written
                for msg in _chain(first, messages):
                    if msg.sha256 not in ("", sha) or msg.size not in (0, size):
                        raise InvalidRequest("The fields sha256 and size may only repeat the first message's: an "
                                             "upload stream carries one file.")
                    if msg.data:
                        received = store.write_chunk(hold, sha, size, msg.offset, msg.data)
                        digest.update(msg.data)
                if received == size:
                    store.finish(sha, digest.hexdigest())
            finally:
                hold.close()
                store.end_upload(sha)
        return pb.UploadStatus(sha256=sha, size=size, received=received, complete=received == size)

    @rpc
    def Download(self, request, context):
        user = self.user(context)
        path = self.site.storage(user).blob(request.sha256)
        with self.site.stream(user):
            for offset, size, data in _file_chunks(path, request.offset):
                if data:
                    yield pb.DownloadChunk(offset=offset, size=size, data=data)


def _file_chunks(path: Path, start: int) -> Iterator[tuple[int, int, bytes]]:
    """``(offset, file size, data)`` of *path* from byte *start* on; one empty chunk when *start* is the end."""
    size = path.stat().st_size
    if not 0 <= start <= size:
        raise InvalidRequest(f"The field offset, {start}, is outside the file ({size} bytes).")
    with open(path, "rb") as fh:
        fh.seek(start)
        offset = start
        while True:
            data = fh.read(codec.CHUNK_BYTES)
            yield offset, size, data
            offset += len(data)
            if offset >= size:
                return


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
        check_name(request.name, "name")
        store = self.site.storage(user)
        weights = store.blob(request.weights.sha256, "weights.sha256")
        sidecar = store.blob(request.sidecar.sha256, "sidecar.sha256") if request.sidecar.sha256 else None
        backend = self.site.shared if scope == "shared" else self.site.user_backend(user)
        with self.site.stream(user):  # loading the weights to check them takes a while
            info = self.site.register_model(store, backend, safe_name(request.name or "model"), weights, sidecar,
                                            scope)
        return codec.to_model_msg(info)

    @rpc
    def Delete(self, request, context):
        user = self.user(context)
        scope = request.scope or "user"
        if scope == "shared" and user not in self.site.admins:
            raise Forbidden("Only the server's admins may delete shared models.")
        self.site.delete_model(user, request.name, scope)
        return pb.Empty()

    @rpc
    def Download(self, request, context):
        user = self.user(context)
        path = self.site.model_file(user, request.name, request.file)
        with self.site.stream(user):
            sha = sha256_of(path)  # the client checks the whole file against it (a resumed one too)
            for offset, size, data in _file_chunks(path, request.offset):
                first = offset == request.offset
                yield pb.ModelFileChunk(offset=offset, size=size, data=data, sha256=sha if first else "")


    @rpc
    def DownloadWeights(self, request, context):
        user = self.user(context)
        updates: queue.Queue = queue.Queue()
        outcome: dict[str, Any] = {}

        def fetch() -> None:  # in a thread: the download goes on (for the next caller) if this one hangs up
            try:
                with _WEIGHTS_LOCK:
                    outcome["info"] = self.site.shared.download_weights(request.name, lambda d, t: updates.put((d, t)))
            except Exception as exc:
                outcome["error"] = exc
            finally:
                updates.put(None)

        with self.site.stream(user):
            threading.Thread(target=fetch, name="weights-download", daemon=True).start()
            last = (0, 0)
            while (last_or_end := updates.get()) is not None:
                last = last_or_end
                yield pb.WeightsProgress(done=last[0], total=last[1])
        if "error" in outcome:
            raise outcome["error"]
        yield pb.WeightsProgress(done=last[0], total=last[1], model=codec.to_model_msg(outcome["info"]))


#: One download of pretrained weights at a time on a server.
_WEIGHTS_LOCK = threading.Lock()


class SegmentationService(_Service, pbg.SegmentationServicer):
    @rpc
    def Segment(self, request, context):
        user = self.user(context)
        params = params_of(SegmentParams, request.params_json, "segmentation parameter")
        images = [codec.from_array_msg(m, f"images[{i}]") for i, m in enumerate(request.images)]
        if not images:
            raise InvalidRequest("The field images is empty: there is nothing to segment.")
        with self.site.stream(user):
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
        params = params_of(TrainParams, request.params_json, "training parameter")
        check_name(params.model_name, "model_name")
        for field in ("test_dir", "save_path", "replay_dir"):
            if getattr(params, field):
                raise InvalidRequest(f"Parameter {field} cannot name a server folder; upload the data as a dataset.")
        if params.device not in (None, "cpu", "cuda") and not str(params.device).startswith("cuda:"):
            raise InvalidRequest(f"Parameter device must be cpu or cuda[:N], not {params.device[:20]!r}.")
        base = self.site.base_model_spec(user, params.base_model)
        replay = self.site.replay_folder(store, request.replay_dataset_id, params)
        local = dataclasses.replace(params, base_model=base, replay_dir=replay)
        public_params = to_dict(params)

        def start(backend):
            return backend.submit_training(folder, local)

        estimate = self.site.train_estimate(user, params.base_model)
        return codec.to_job_msg(self.site.submit_job(store, Submission(user, "train", public_params, str(store.home),
                                                                       None, start), estimate))

    @rpc
    def SubmitBatch(self, request, context):
        user = self.user(context)
        store = self.site.storage(user)
        folder = store.dataset(request.dataset_id)
        params = params_of(SegmentParams, request.params_json, "segmentation parameter")
        backend, info = self.site.resolve_model(user, params.model)
        paths = self.site.dataset_images(folder)

        def start(b):
            return b.submit_batch(paths, dataclasses.replace(params, model=info.name))

        home, models_dir = self.site.home_of(backend)
        sub = Submission(user, "batch", to_dict(params), home, models_dir, start)
        return codec.to_job_msg(self.site.submit_job(store, sub, self.site.batch_estimate(paths)))

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
        self.site.queue.job(user, request.job_id)
        with self.site.stream(user):
            yield from self._watch(user, request, since, context)

    def _watch(self, user, request, since, context):
        while context.is_active():
            for event in self.site.queue.events(user, request.job_id, since):
                since = event.seq
                yield codec.to_event_msg(event)
            if not request.follow or self.site.queue.job(user, request.job_id).state in FINAL_STATES:
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
        found = self.site.predictions(user, request.job_id)
        with self.site.stream(user):
            for path, image, frame, origin in found:
                result = prediction_result(path, image=image, frame=frame)
                yield pb.Prediction(image=image, frame=frame, result=codec.to_result_msg(result), origin=origin)


# -------------------------------------------------------------------------------- storage
def _usage_msg(store: UserStorage) -> pb.StorageUsage:
    nbytes, files = store.usage()
    return pb.StorageUsage(bytes_used=nbytes, quota_bytes=store.quota_bytes, files=files)


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
        with self.site.stream(user):
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

