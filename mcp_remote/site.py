"""A server's state: tokens, users' storage and LocalBackends, the shared models, the job queue.

:class:`Site` is what the gRPC services (:mod:`mcp_remote.services`) call; it holds no
segmentation or training code: those go to a :class:`~mcp_core.backend.LocalBackend` per user
(home ``<storage>/users/<user>/home``) and one for the shared models.

The storage root is mode 0711 (others may pass through, to the token socket's ``run/`` folder,
but list nothing); every other folder the server makes is 0700 and its files 0600. Each user
may have ``max_streams_per_user`` streaming or long calls open at once (:meth:`Site.stream`), so
one user's open calls cannot take every serving thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import getpass
import json
import os
import random
import secrets
import shutil
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from mcp_core.backend import LocalBackend
from mcp_core.catalog import PRETRAINED, SCRATCH, sidecar_path
from mcp_core.errors import MCPError, ModelError, ParameterError
from mcp_core.params import JobInfo, ModelInfo, SegmentParams, SegmentResult, TrainParams

from .auth import AuthError, LoginThrottle, PasswordFile, TokenStore
from .config import RemoteConfig
from .errors import Busy, InvalidRequest, ModelNotFound, Throttled
from .job_queue import JobQueue, Submission
from .storage import BLOCK, Ledger, UserStorage, blocks_for, private_dir

MAX_SIDECAR_BYTES = 1 << 20
#: What a batch job's predictions may take per byte of its input images (masks, class map, outlines,
#: flows of a 16-bit one-channel frame): the estimate a batch job must find room for.
PREDICTION_BYTES_PER_INPUT_BYTE = 16


def use_cpsam_path(path: str) -> None:
    """Point cellpose's model cache at the folder of ``cpsam_model_path`` (a file named cpsam/cpsam_v2, or a folder).

    Raises
    ------
    ParameterError
        When the path does not exist or names a file cellpose would not look for.
    """
    p = Path(path).expanduser()
    if p.is_dir():
        os.environ["CELLPOSE_LOCAL_MODELS_PATH"] = str(p)
    elif p.is_file() and p.name in PRETRAINED:
        os.environ["CELLPOSE_LOCAL_MODELS_PATH"] = str(p.parent)
    else:
        raise ParameterError(f"cpsam_model_path {path} must be a folder holding 'cpsam', or a file named "
                             f"{' or '.join(PRETRAINED)}.")


class Site:
    """Everything one MultiCellPose server serves.

    Parameters
    ----------
    config
        The server's settings (storage root, limits, admins, model and replay folders).
    """


    def __init__(self, config: RemoteConfig) -> None:
        self.config = config
        self.root = config.storage_root()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        for name in ("auth", "users", "jobs", "shared"):
            private_dir(self.root / name)
            os.chmod(self.root / name, 0o700)
        if config.cpsam_model_path:
            use_cpsam_path(config.cpsam_model_path)
        self.tokens = TokenStore(self.root / "auth" / "tokens", config.token_days * 86400, config.max_tokens_per_user)
        self.passwords = PasswordFile(self.root / "auth" / "passwords.json")
        self.ledger = Ledger(config.quota_bytes, config.max_files, self._folders_of)
        self._streams: dict[str, int] = {}
        self._streams_lock = threading.Lock()
        # Per user, and (looser, as every tunnelled client shares 127.0.0.1) per peer address.
        self.throttle = LoginThrottle(max_failures=5)
        self.peer_throttle = LoginThrottle(max_failures=50)
        self.admins = set(config.server_admins) | {getpass.getuser()}
        self._backends: dict[tuple[str, str | None], LocalBackend] = {}
        self._backends_lock = threading.Lock()
        self.shared = self.backend_for(str(self.root / "shared"), str(config.shared_models()))
        self.segment_lock = threading.Lock()
        self._event_tick = threading.Event()
        self.queue = JobQueue(self.root / "jobs", self.backend_for, on_end=self._job_ended,
                              max_per_user=config.max_queued_jobs)

    def close(self) -> None:
        """Stop the job scheduler."""
        self.queue.close()

    # ------------------------------------------------------------------ identity
    @staticmethod
    def bearer(header: str) -> str:
        """The token of an ``authorization: Bearer <token>`` header ('' when absent)."""
        scheme, _, token = (header or "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else ""

    def user(self, header: str) -> str:
        """The user of a call's authorization header.

        Raises
        ------
        AuthError
            When the token is missing, unknown or expired.
        """
        token = self.bearer(header)
        if not token:
            raise AuthError("This call needs an access token (authorization: Bearer ...); "
                            "get one with `multicellpose-server token` or by logging in.")
        return self.tokens.user(token)

    def login(self, user: str, password: str, peer: str) -> tuple[str, float]:
        """A token for a password login: ``(token, expires)``.

        Raises
        ------
        Throttled
            When *user* or *peer* has failed too often (attempts in progress count as failures).
        AuthError
            For a wrong user name or password.
        """
        try:
            self.throttle.begin(user)
        except AuthError as exc:
            raise Throttled(str(exc)) from None
        try:
            self.peer_throttle.begin(peer)
        except AuthError as exc:
            self.throttle.end(user, None)
            raise Throttled(str(exc)) from None
        ok = False
        try:
            ok = self.passwords.verify(user, password)
        finally:
            self.throttle.end(user, ok)
            self.peer_throttle.end(peer, ok or None)
        if not ok:
            raise AuthError("Wrong user name or password.")
        return self.tokens.mint(user, via="password")

    @contextlib.contextmanager
    def stream(self, user: str) -> Iterator[None]:
        """Admit one streaming or long call of *user* for the time of the ``with`` block.

        Raises
        ------
        Busy
            When *user* already has ``max_streams_per_user`` streams open.
        """
        with self._streams_lock:
            n = self._streams.get(user, 0)
            if n >= self.config.max_streams_per_user:
                raise Busy(f"You have {n} transfers or long calls open, the most this server allows one user; "
                           "wait for one to end.")
            self._streams[user] = n + 1
        try:
            yield
        finally:
            with self._streams_lock:
                self._streams[user] -= 1

    def limits(self) -> dict:
        """Limits a client must respect."""
        from .channel import MAX_MESSAGE_BYTES
        from .codec import CHUNK_BYTES

        return {"max_upload_bytes": self.config.max_upload_bytes, "quota_bytes": self.config.quota_bytes,
                "max_message_bytes": MAX_MESSAGE_BYTES, "chunk_bytes": CHUNK_BYTES, "max_files": self.config.max_files,
                "max_streams_per_user": self.config.max_streams_per_user,
                "max_queued_jobs": self.config.max_queued_jobs}

    # ------------------------------------------------------------------ storage and backends
    def storage(self, user: str) -> UserStorage:
        """*user*'s storage."""
        return UserStorage(self.root, user, self.ledger, self.config.max_upload_bytes)

    def _folders_of(self, user: str) -> list[Path]:
        return [self.root / "users" / user, *self.queue.folders(user)]

    def backend_for(self, home: str, models_dir: str | None = None) -> LocalBackend:
        """The LocalBackend of a home folder (one per folder, kept)."""
        key = (str(home), models_dir)
        with self._backends_lock:
            if key not in self._backends:
                self._backends[key] = LocalBackend(home, models_dir=models_dir, cluster=self.config.cluster or None,
                                                   cluster_config=self.config.cluster_config or None,
                                                   train_executor=self.config.train_executor)
            return self._backends[key]

    def home_of(self, backend: LocalBackend) -> tuple[str, str | None]:
        """The ``(home, models_dir)`` key of a backend made by :meth:`backend_for`."""
        for key, b in self._backends.items():
            if b is backend:
                return key
        raise MCPError("Unknown backend.")

    def user_backend(self, user: str) -> LocalBackend:
        """*user*'s LocalBackend."""
        return self.backend_for(str(self.storage(user).home))

    # ------------------------------------------------------------------ models
    def _scoped(self, user: str) -> list[tuple[ModelInfo, LocalBackend]]:
        mine = self.user_backend(user)
        out = [(m, mine) for m in mine.list_models() if m.scope == "user"]
        out += [(dataclasses.replace(m, scope="shared"), self.shared) for m in self.shared.list_models() if m.scope == "user"]
        out += [(m, mine) for m in mine.list_models() if m.scope == "builtin"]
        return out

    def models(self, user: str) -> list[ModelInfo]:
        """Builtin, shared and *user*'s models; a user model hides a shared one of the same name."""
        seen, out = set(), []
        for info, _ in self._scoped(user):
            if info.name not in seen:
                seen.add(info.name)
                out.append(info)
        return out

    def resolve_model(self, user: str, name: str) -> tuple[LocalBackend, ModelInfo]:
        """The backend holding model *name* for *user* (user models first, then shared, then builtin).

        Raises
        ------
        ModelNotFound
            When *user* sees no model of that name.
        """
        for info, backend in self._scoped(user):
            if info.name == name:
                return backend, info
        known = ", ".join(m.name for m in self.models(user)) or "none"
        raise ModelNotFound(f"There is no model named {str(name)[:80]!r}; known models: {known}.")

    def base_model_spec(self, user: str, name: str) -> str:
        """What a training job gets as ``base_model``: a pretrained name, ``tiny``/``unet``, a user model name or a shared model's file."""
        if name in PRETRAINED or name in SCRATCH:
            return name
        backend, info = self.resolve_model(user, name)
        return info.path if backend is self.shared else info.name

    def register_model(self, store: UserStorage, backend: LocalBackend, name: str, weights: Path,
                       sidecar: Path | None, scope: str) -> ModelInfo:
        """Check an uploaded model (``torch.load(weights_only=True)``, shapes) and add it to *backend*'s models."""
        if sidecar is not None:
            if sidecar.stat().st_size > MAX_SIDECAR_BYTES:
                raise InvalidRequest("The model's sidecar is larger than 1 MiB.")
            try:
                side = json.loads(sidecar.read_text("utf-8"))
            except (OSError, ValueError) as exc:
                raise InvalidRequest(f"The model's sidecar is not JSON: {exc}.") from exc
            if not isinstance(side, dict):
                raise InvalidRequest("The model's sidecar must be a JSON object.")
        size = blocks_for(weights.stat().st_size) + blocks_for(sidecar.stat().st_size if sidecar else MAX_SIDECAR_BYTES)
        hold = store.hold(size + 2 * BLOCK, 2, "This model") if scope == "user" else None
        staging = private_dir(store.dir / "staging") / secrets.token_hex(8)
        staging.mkdir(mode=0o700)
        try:
            staged = staging / f"{name}.pth"
            os.link(weights, staged)
            if sidecar is not None:
                os.link(sidecar, sidecar_path(staged))
            info = backend.add_model(staged)
        except ModelError as exc:
            raise InvalidRequest(f"The uploaded model was refused: {exc}".replace(str(staging), "upload")) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            store.changed()
            if hold is not None:
                hold.close()
        return dataclasses.replace(info, scope=scope)

    def model_file(self, user: str, name: str, file: str) -> Path:
        """The state dict (*file* ``"weights"``) or sidecar (``"sidecar"``) of a user or shared model *user* sees.

        Raises
        ------
        InvalidRequest
            For another *file*.
        ModelError
            For a builtin model (cellpose fetches those weights itself).
        ModelNotFound
            When *user* sees no such model, or it has no such file.
        """
        if file not in ("weights", "sidecar"):
            raise InvalidRequest(f"A model's file is 'weights' or 'sidecar', not {str(file)[:40]!r}.")
        _, info = self.resolve_model(user, name)
        if info.scope == "builtin":
            raise ModelError(f"{info.name} is a builtin model: cellpose downloads its weights itself.")
        path = Path(info.path) if file == "weights" else sidecar_path(info.path)
        if not path.is_file():
            raise ModelNotFound(f"The model {info.name} has no {file} file.")
        return path

    def delete_model(self, user: str, name: str, scope: str) -> None:
        """Delete a user or shared model (its file and sidecar)."""
        backend = self.shared if scope == "shared" else self.user_backend(user)
        found = [m for m in backend.list_models() if m.scope == "user" and m.name == name]
        if not found:
            raise ModelNotFound(f"There is no {scope} model named {str(name)[:80]!r}.")
        path = Path(found[0].path)
        store = self.storage(user) if scope == "user" else None
        for p in (path, sidecar_path(path)):
            p.unlink(missing_ok=True)
        if store is not None:
            store.changed()

    # ------------------------------------------------------------------ work
    def segment(self, user: str, images: Sequence[np.ndarray], params: SegmentParams) -> list[SegmentResult]:
        """Segment with the LocalBackend holding the model (one segmentation at a time on the GPU)."""
        backend, info = self.resolve_model(user, params.model)
        with self.segment_lock:
            return backend.segment(images, dataclasses.replace(params, model=info.name))

    def dataset_images(self, folder: Path) -> list[str]:
        """The images of a dataset folder (labels and predictions left out)."""
        from mcp_core.io import list_images

        paths = [str(p) for p in list_images(folder)]
        if not paths:
            raise InvalidRequest("The dataset holds no images.")
        return paths

    def replay_folder(self, store: UserStorage, dataset_id: str, params: TrainParams) -> str | None:
        """Where a training job's replay data comes from: an uploaded dataset, or a sample of ``replay_root``."""
        if dataset_id:
            return str(store.dataset(dataset_id))
        if params.replay_fraction <= 0 or not self.config.replay_root:
            return None
        from mcp_core.filenames import image_stem, label_path, masks_tiff_pair
        from mcp_core.io import list_images

        root = Path(self.config.replay_root).expanduser()
        labelled = [p for p in list_images(root) if label_path(p).exists() or masks_tiff_pair(p)]
        n = self.config.replay_sample_size or len(labelled)
        chosen = random.Random(params.seed).sample(labelled, min(n, len(labelled)))
        folder = private_dir(store.dir / "replay") / secrets.token_hex(8)
        folder.mkdir(mode=0o700)
        for image in chosen:
            stem = image_stem(image)
            for p in image.parent.glob(f"{stem}*"):
                if p.is_file() and (p == image or p.name.startswith(f"{stem}_") or p.name.startswith(f"{stem}__")):
                    os.symlink(p, folder / p.name)
        return str(folder)

    def predictions(self, user: str, job_id: str) -> list[tuple[Path, str, str, str]]:
        """``(prediction file, image file name, frame, origin)`` of a batch job, each checked to lie in *user*'s datasets."""
        record = self.queue.record(user, job_id)
        if record["kind"] != "batch":
            raise InvalidRequest(f"Job {job_id} is a {record['kind']} job; only batch jobs have predictions.")
        if not record.get("local_id"):
            return []
        store = self.storage(user)
        datasets = store.datasets.resolve()
        backend = self.backend_for(record["home"], record.get("models_dir"))
        out = []
        for event in backend.events(record["local_id"], 0):
            if event.kind != "artifact" or event.data.get("kind") != "prediction":
                continue
            path = Path(str(event.data.get("path", ""))).resolve()
            if not (path.is_relative_to(datasets) and path.is_file()):
                continue
            image = os.path.basename(str(event.data.get("image", "")))
            out.append((path, image, str(event.data.get("frame", "")), store.origin(path.parent, image)))
        return out

    def submit_job(self, store: UserStorage, sub: Submission, estimate: int) -> JobInfo:
        """Queue a job after holding *estimate* bytes of *store*'s quota for its outputs until it ends.

        Raises
        ------
        QuotaExceeded
            When the user's free quota is below *estimate*, or they have too many jobs waiting.
        """
        hold = store.hold(max(estimate, self.config.job_min_bytes), 0, f"This {sub.kind} job")
        try:
            return self.queue.submit(dataclasses.replace(sub, release=hold.close))
        except BaseException:
            hold.close()
            raise

    def train_estimate(self, user: str, base_model: str) -> int:
        """Bytes a training job may write: its model and the checkpoint replacing it, each the size of the base."""
        if base_model in SCRATCH:
            return 0
        if base_model in PRETRAINED:
            cache = Path(os.environ.get("CELLPOSE_LOCAL_MODELS_PATH") or Path.home() / ".cellpose" / "models")
            weights = cache / base_model
        else:
            weights = Path(self.resolve_model(user, base_model)[1].path)
        return 2 * blocks_for(weights.stat().st_size) if weights.is_file() else 0

    @staticmethod
    def batch_estimate(paths: Sequence[str]) -> int:
        """Bytes a batch job's predictions of *paths* may take."""
        return PREDICTION_BYTES_PER_INPUT_BYTE * sum(os.path.getsize(p) for p in paths)

    def _job_ended(self, record: dict) -> None:
        """A job reached a final state (its hold is given back): measure its user's files again."""
        self.ledger.stale(record["user"])

    def clear_training_files(self, user: str) -> None:
        """Delete *user*'s uploads, datasets and finished jobs (models stay)."""
        store = self.storage(user)
        self.user_backend(user).clear_training_files()
        self.queue.remove_finished(user)
        store.clear()
        shutil.rmtree(store.dir / "replay", ignore_errors=True)
        store.changed()

