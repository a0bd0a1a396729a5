"""Conversions between numpy arrays / :mod:`mcp_core.params` dataclasses and protocol messages.

Arrays travel as raw C-order bytes with their dtype and shape, never pickled: a dtype that
can hold Python objects is refused on both sides, and a buffer whose length does not match
its shape is refused before numpy sees it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

from mcp_core.errors import ParameterError
from mcp_core.jobs import plain
from mcp_core.params import JobEvent, JobInfo, ModelInfo, SegmentResult

from .proto import multicellpose_pb2 as pb

#: dtype kinds allowed on the wire: bool, signed/unsigned integers, floats, complex, fixed-width strings.
WIRE_KINDS = frozenset("biufcU")
#: Most dimensions an array on the wire may have (numpy's own limit).
MAX_DIMS = 32
#: Bytes per message of a file upload or download stream. 1 MiB, not more: with 4 MiB messages the
#: server spent about 1.5x the CPU per byte received (4.1-4.5 vs 2.7-2.9 s/GiB, benchmarks/remote_bench.py
#: setup; big fresh buffers, copied and hashed out of cache) and uploads were slower direct and through SSH.
CHUNK_BYTES = 1 << 20
#: Field tags of ``UploadChunk.offset`` (3, varint) and ``UploadChunk.data`` (4, length-delimited).
_OFFSET_TAG, _DATA_TAG = b"\x18", b"\x22"


def upload_chunk_bytes(offset: int, data: bytes) -> bytes:
    """The serialized ``UploadChunk(offset=offset, data=data)``, as protobuf writes it.

    One copy of *data*: protobuf's own serializer copies a large bytes field into fresh memory
    more than once, about 1.8 CPU s/GiB of page faults and copies against about 0.2 here.
    """
    parts = [_OFFSET_TAG, _varint(offset)] if offset else []  # proto3 leaves out fields at their defaults
    if data:
        parts += [_DATA_TAG, _varint(len(data)), data]
    return b"".join(parts)


def _varint(value: int) -> bytes:
    """*value* (>= 0) as a protobuf base-128 varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def to_array_msg(arr: np.ndarray) -> pb.NDArray:
    """An array as an :class:`NDArray` message (C-order bytes, explicit byte order)."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in WIRE_KINDS:
        raise ParameterError(f"An array of dtype {arr.dtype} cannot be sent; only numeric, boolean and string arrays can.")
    return pb.NDArray(dtype=arr.dtype.str, shape=list(arr.shape), data=np.ascontiguousarray(arr).tobytes())


def from_array_msg(msg: pb.NDArray, what: str = "array") -> np.ndarray:
    """The array of an :class:`NDArray` message (read-only, no copy).

    Raises
    ------
    ParameterError
        When the dtype is not a plain numeric/string type or the byte count does not match the shape.
    """
    try:
        dtype = np.dtype(msg.dtype)
    except TypeError as exc:
        raise ParameterError(f"The {what} has an unknown dtype {msg.dtype!r}.") from exc
    if dtype.kind not in WIRE_KINDS or dtype.hasobject or dtype.fields is not None:
        raise ParameterError(f"The {what} has dtype {dtype}, which is not a plain numeric or string type.")
    shape = tuple(int(s) for s in msg.shape)
    if len(shape) > MAX_DIMS:
        raise ParameterError(f"The {what} has {len(shape)} dimensions in its field shape; at most {MAX_DIMS} are allowed.")
    if any(s < 0 for s in shape):
        raise ParameterError(f"The {what} has a negative dimension in its field shape {shape}.")
    if math.prod(s for s in shape if s) * dtype.itemsize >= 1 << 62:  # Python integers: no wrap-around
        raise ParameterError(f"The {what} has a field shape {shape} too large for any array.")
    expected = math.prod(shape) * dtype.itemsize
    if expected != len(msg.data):
        raise ParameterError(f"The {what} holds {len(msg.data)} bytes, but shape {shape} of {dtype} needs {expected}.")
    return np.frombuffer(msg.data, dtype=dtype).reshape(shape)


def _optional(msg: Any, field: str) -> np.ndarray | None:
    return from_array_msg(getattr(msg, field), field).copy() if msg.HasField(field) else None


def to_result_msg(res: SegmentResult) -> pb.SegmentResult:
    """A :class:`SegmentResult` as a message."""
    msg = pb.SegmentResult(masks=to_array_msg(res.masks), classes=to_array_msg(res.classes),
                           class_names=list(res.class_names), diameter=float(res.diameter), image=res.image,
                           frame=res.frame, class_colors=list(res.class_colors))
    for field in ("class_map", "flows", "cellprob"):
        value = getattr(res, field)
        if value is not None:
            getattr(msg, field).CopyFrom(to_array_msg(value))
    for name, scores in res.confidence.items():
        msg.confidence[name].CopyFrom(to_array_msg(scores))
    return msg


def from_result_msg(msg: pb.SegmentResult) -> SegmentResult:
    """The :class:`SegmentResult` of a message (arrays are writable copies, as a local result's are)."""
    return SegmentResult(masks=from_array_msg(msg.masks, "masks").copy(),
                         classes=from_array_msg(msg.classes, "classes").copy(),
                         class_names=list(msg.class_names),
                         class_map=_optional(msg, "class_map"), flows=_optional(msg, "flows"),
                         cellprob=_optional(msg, "cellprob"),
                         diameter=msg.diameter, image=msg.image, frame=msg.frame, class_colors=list(msg.class_colors),
                         confidence=_confidence(msg))


def _confidence(msg: pb.SegmentResult) -> dict[str, np.ndarray]:
    """Per-object scores of a result message: 1-D real arrays, one value per mask id."""
    out = {}
    for name, arr_msg in msg.confidence.items():
        scores = from_array_msg(arr_msg, f"confidence score {name!r}")
        if scores.ndim != 1 or scores.dtype.kind != "f":
            raise ParameterError(f"The confidence score {name!r} is a {scores.dtype} array of shape {scores.shape}, "
                                 "not one real number per mask id.")
        out[name] = scores.copy()
    return out


def dumps(obj: Any) -> str:
    """JSON of a dataclass or plain value (numpy values become lists/numbers)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return json.dumps(obj, default=plain)


def loads(text: str, what: str = "field") -> dict[str, Any]:
    """A JSON object from a message field ('' is an empty dict).

    Raises
    ------
    ParameterError
        When the text is not a JSON object.
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ParameterError(f"The {what} is not valid JSON: {exc}.") from exc
    if not isinstance(value, dict):
        raise ParameterError(f"The {what} must be a JSON object.")
    return value


def to_model_msg(info: ModelInfo, sha256: str = "") -> pb.Model:
    """A :class:`ModelInfo` as a message (the server's file path is not sent)."""
    return pb.Model(name=info.name, scope=info.scope, class_names=list(info.class_names),
                    class_colors=list(info.class_colors), architecture=info.architecture, available=info.available,
                    note=info.note, metrics_json=dumps(info.metrics), sha256=sha256, state=info.state,
                    epochs_done=info.epochs_done, epochs=info.epochs)


def from_model_msg(msg: pb.Model) -> ModelInfo:
    """The :class:`ModelInfo` of a message; ``path`` is empty (the file is on the server)."""
    return ModelInfo(name=msg.name, path="", class_names=list(msg.class_names), class_colors=list(msg.class_colors),
                     scope=msg.scope or "user", architecture=msg.architecture, available=msg.available, note=msg.note,
                     metrics=loads(msg.metrics_json, "model metrics"), state=msg.state,
                     epochs_done=max(msg.epochs_done, 0), epochs=max(msg.epochs, 0))


def to_job_msg(info: JobInfo) -> pb.Job:
    """A :class:`JobInfo` as a message."""
    return pb.Job(job_id=info.job_id, kind=info.kind, state=info.state, created=info.created,
                  params_json=dumps(info.params), result_json=dumps(info.result), error=info.error)


def from_job_msg(msg: pb.Job) -> JobInfo:
    """The :class:`JobInfo` of a message."""
    return JobInfo(job_id=msg.job_id, kind=msg.kind, state=msg.state, created=msg.created,  # type: ignore[arg-type]
                   params=loads(msg.params_json, "job parameters"), result=loads(msg.result_json, "job result"),
                   error=msg.error)


def to_event_msg(event: JobEvent) -> pb.JobEvent:
    """A :class:`JobEvent` as a message."""
    return pb.JobEvent(seq=event.seq, job_id=event.job_id, kind=event.kind, data_json=dumps(event.data), time=event.time)


def from_event_msg(msg: pb.JobEvent) -> JobEvent:
    """The :class:`JobEvent` of a message."""
    return JobEvent(seq=msg.seq, job_id=msg.job_id, kind=msg.kind, data=loads(msg.data_json, "event data"),  # type: ignore[arg-type]
                    time=msg.time)
