"""The committed gRPC stubs match the .proto, and arrays/config cross their boundaries safely."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mcp_core.errors import ParameterError
from mcp_core.params import SegmentResult
from mcp_remote import codec
from mcp_remote.config import load_config
from mcp_remote.proto import multicellpose_pb2 as pb

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ("multicellpose_pb2.py", "multicellpose_pb2.pyi", "multicellpose_pb2_grpc.py")


def test_committed_stubs_are_current(tmp_path):
    pytest.importorskip("grpc_tools")
    (tmp_path / "mcp_remote" / "proto").mkdir(parents=True)
    shutil.copy(ROOT / "mcp_remote" / "proto" / "multicellpose.proto", tmp_path / "mcp_remote" / "proto")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--pyi_out=.",
                    "--grpc_python_out=.", "mcp_remote/proto/multicellpose.proto"], cwd=tmp_path, check=True)
    for name in GENERATED:
        fresh = (tmp_path / "mcp_remote" / "proto" / name).read_text()
        committed = (ROOT / "mcp_remote" / "proto" / name).read_text()
        assert fresh == committed, (f"{name} is stale: run `python -m grpc_tools.protoc -I. --python_out=. "
                                    "--pyi_out=. --grpc_python_out=. mcp_remote/proto/multicellpose.proto`")


def test_protocol_is_versioned():
    assert pb.DESCRIPTOR.package == "multicellpose.v1"


@pytest.mark.parametrize("offset, size", [(0, 0), (5, 0), (0, 5), (127, 3), (128, 200), (1 << 40, 1 << 20),
                                          ((1 << 63) - 1, 10)])
def test_upload_chunks_serialize_as_protobuf_does(offset, size):
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    wire = codec.upload_chunk_bytes(offset, data)
    assert wire == pb.UploadChunk(offset=offset, data=data).SerializeToString()
    assert pb.UploadChunk.FromString(wire) == pb.UploadChunk(offset=offset, data=data)


def test_the_client_uploads_to_the_stubs_method():
    from mcp_remote.client import UPLOAD_METHOD

    method = pb.DESCRIPTOR.services_by_name["Transfer"].methods_by_name["Upload"]
    assert UPLOAD_METHOD == "/{}/{}".format(*method.full_name.rsplit(".", 1))
    assert method.input_type.name == "UploadChunk"


@pytest.mark.parametrize("arr", [np.arange(12, dtype=">u2").reshape(3, 4), np.zeros((0, 5), np.float32),
                                 np.array([["a", "bc"]]), np.ones((2, 3, 4), bool)[:, ::2]])
def test_arrays_round_trip_without_pickle(arr):
    back = codec.from_array_msg(codec.to_array_msg(arr))
    np.testing.assert_array_equal(back, arr)
    assert back.dtype == arr.dtype and back.shape == arr.shape


def test_object_arrays_are_refused_both_ways():
    with pytest.raises(ParameterError, match="cannot be sent"):
        codec.to_array_msg(np.array([{"a": 1}], dtype=object))
    with pytest.raises(ParameterError, match="not a plain"):
        codec.from_array_msg(pb.NDArray(dtype="|O", shape=[1], data=b"\0" * 8))
    with pytest.raises(ParameterError, match="needs 8"):
        codec.from_array_msg(pb.NDArray(dtype="<u2", shape=[2, 2], data=b"\0" * 7))


def test_confidence_scores_must_be_one_real_number_per_mask():
    masks = np.array([[0, 1], [2, 2]], np.uint16)
    res = SegmentResult(masks, np.array([0, 1, 1], np.uint16), ["unassigned", "a"],
                        confidence={"confidence": np.array([np.nan, 0.25, 0.75])})
    back = codec.from_result_msg(codec.to_result_msg(res))
    np.testing.assert_array_equal(back.confidence["confidence"], res.confidence["confidence"])
    for bad in (np.zeros((3, 1)), np.array([0, 1, 2])):
        res.confidence = {"confidence": bad}
        with pytest.raises(ParameterError, match="'confidence' is a .* not one real number per mask id"):
            codec.from_result_msg(codec.to_result_msg(res))


def test_model_state_epochs_and_metrics_cross_the_wire():
    from mcp_core.params import ModelInfo

    info = ModelInfo("stopped", class_names=["unassigned", "cell"], scope="user", architecture="unet",
                     note="training was cancelled (last checkpoint)", metrics={"ap50": 0.25}, state="cancelled",
                     epochs_done=3, epochs=100)
    back = codec.from_model_msg(pb.Model.FromString(codec.to_model_msg(info).SerializeToString()))
    assert back == ModelInfo(**{**info.__dict__, "path": ""})  # the server's file path is not sent
    assert codec.from_model_msg(pb.Model(name="old server")).state == ""  # a server without these fields


def test_config_keys(tmp_path):
    example = load_config(ROOT / "remote_config.example.json")
    assert example.server_bind.startswith("127.0.0.1") and example.ssh_remote_bind == "127.0.0.1"
    path = tmp_path / "remote_config.json"
    path.write_text(json.dumps({"server_bind": "unix:/tmp/x.sock", "replay_sample_size": 7, "ssh_local_port": 6000}))
    cfg = load_config(path)
    assert (cfg.server_bind, cfg.replay_sample_size, cfg.ssh_local_port) == ("unix:/tmp/x.sock", 7, 6000)
    path.write_text(json.dumps({"server_bnd": "x"}))
    with pytest.raises(ParameterError, match="unknown key.*server_bnd"):
        load_config(path)
    path.write_text(json.dumps({"ssh_port": 0}))
    with pytest.raises(ParameterError, match="ssh_port"):
        load_config(path)
