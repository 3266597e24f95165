"""Where TensorFlow runs a function's model (``triggers.devices``), on the CPU: the device
choice, its refusal without a GPU, the placement inside the compiled pipeline (read from
its graph, so a GPU placement is checked without a GPU), the device each verdict step
carries, and the serve flags. The same checks on a real GPU are
tests/integration/test_triggers_gpu.py."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest

from storage import api
from storage.client import open_embedded
from triggers.devices import (
    CPU_DEVICE,
    GPU_DEVICE,
    NO_GPU_REASON,
    Placement,
    TensorFlowSettings,
    choose_device,
)

# --- the choice (pure: no TensorFlow) ----------------------------------------------------------


@pytest.mark.parametrize(("requested", "gpus", "device"), [
    ("auto", (), CPU_DEVICE),
    ("auto", ("GPU:0", "GPU:1"), GPU_DEVICE),
    ("cpu", (), CPU_DEVICE),
    ("cpu", ("GPU:0",), CPU_DEVICE),
    ("gpu", ("GPU:0",), GPU_DEVICE),
])
def test_the_device_choice(requested: str, gpus: tuple[str, ...], device: str) -> None:
    placement = choose_device(requested, gpus, "growth")
    assert placement.device == device and placement.error == ""
    assert placement.status()["device"] == device.removeprefix("/device:")
    assert placement.status()["requested"] == requested


def test_gpu_requested_without_one_refuses_with_the_reason() -> None:
    placement = choose_device("gpu", ())
    assert placement.device is None
    assert NO_GPU_REASON in placement.error and "--tensorflow-device gpu" in placement.error
    assert placement.status() == {"requested": "gpu", "gpus": [], "error": placement.error}
    with pytest.raises(AssertionError):
        Placement("gpu", None)  # a refusal always says why


def test_settings_are_checked() -> None:
    from storage import limits

    TensorFlowSettings(gpu_memory_limit_mib=limits.tensorflow_gpu_memory_limit_mib_min)
    for bad in ({"device": "tpu"}, {"intra_op_threads": 0},
                {"gpu_memory_limit_mib": limits.tensorflow_gpu_memory_limit_mib_min - 1}):
        with pytest.raises(AssertionError):
            TensorFlowSettings(**bad)  # type: ignore[arg-type]


# --- squall serve's flags ---------------------------------------------------------------


def _serve_args(*argv: str) -> argparse.Namespace:
    from squall.cli import build_parser

    return build_parser().parse_args(["serve", *argv])


def test_serve_flags_reach_the_hook_only_when_given() -> None:
    from squall.cli import _build_hook, _tensorflow_options

    assert _tensorflow_options(_serve_args()) == {}
    assert _tensorflow_options(_serve_args("--tensorflow-device", "gpu",
                                           "--gpu-memory-limit-mib", "2048")) == {
        "tensorflow_device": "gpu", "gpu_memory_limit_mib": 2048}
    hook = _build_hook(_serve_args("--tensorflow-device", "cpu"), {})
    assert hook.tensorflow == TensorFlowSettings(device="cpu")
    for argv, message in [
        (("--gpu-memory-limit-mib", "16"), "must be 256 to"),
        (("--tensorflow-device", "cpu", "--gpu-memory-limit-mib", "1024"), "needs a GPU"),
    ]:
        with pytest.raises(SystemExit, match=message):
            _tensorflow_options(_serve_args(*argv))
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        _serve_args("--tensorflow-device", "tpu")


# --- with TensorFlow ----------------------------------------------------------------------


def _tensorflow() -> Any:
    return pytest.importorskip("tensorflow",
                               reason="TensorFlow is not installed (pip install -e '.[ml]')")


def _has_gpu() -> bool:
    return bool(_tensorflow().config.list_physical_devices("GPU"))


def _colour_model() -> Any:
    from tests.integration import tf_models
    from triggers.config import ObjectRef
    from triggers.models import load_keras_model

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.keras"
        path.write_bytes(tf_models.colour_model())
        return load_keras_model(str(path), ObjectRef("models", "m.keras"), "v1")


def _image_spec() -> Any:
    from triggers.config import definition_from_document

    return definition_from_document("f", {"kind": "tensorflow", "model": "s3://m/k", "input": {
        "format": "image", "scale": 1 / 255}}).input


def _devices_of(graph_def: Any, op_types: set[str]) -> dict[str, set[str]]:
    """op type -> the devices its nodes are pinned to, in the graph and its functions."""
    found: dict[str, set[str]] = {}
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    for node in nodes:
        if node.op in op_types:
            found.setdefault(node.op, set()).add(node.device)
    return found


def test_the_pipeline_decodes_on_the_cpu_and_runs_the_model_on_its_device() -> None:
    """Traced (not run) for GPU:0, so the placement is read on a host without a GPU: the
    decode and resize ops (inside map_fn's loop body) and the scaling are on the CPU,
    the model's call is on GPU:0; the decode-only graph (LiteRT's) names no GPU."""
    _tensorflow()
    from triggers.functions import _image_pipeline

    model, spec = _colour_model(), _image_spec()
    pipeline = _image_pipeline(model, spec, GPU_DEVICE)
    assert pipeline is not None and model.pipelines[(spec, GPU_DEVICE)] is pipeline
    devices = _devices_of(pipeline.graph.as_graph_def(), {
        "DecodeImage", "ResizeBilinear", "StatelessWhile", "While", "Mul", "AddV2",
        "StatefulPartitionedCall"})
    assert devices["DecodeImage"] == devices["ResizeBilinear"] == {CPU_DEVICE}
    assert devices.get("StatelessWhile", devices.get("While")) == {CPU_DEVICE}
    assert devices["Mul"] == devices["AddV2"] == {CPU_DEVICE}
    assert devices["StatefulPartitionedCall"] == {GPU_DEVICE}  # the model
    decode_only = _image_pipeline(model, spec, with_model=False)
    assert decode_only is not None
    decode_devices = _devices_of(decode_only.graph.as_graph_def(), {"DecodeImage"})
    assert decode_devices["DecodeImage"] == {CPU_DEVICE}
    assert GPU_DEVICE not in str(decode_only.graph.as_graph_def())


def test_the_pipeline_pinned_to_the_cpu_judges_like_the_unpinned_one() -> None:
    _tensorflow()
    import numpy as np

    from tests.integration import tf_models
    from triggers.functions import infer

    model, spec = _colour_model(), _image_spec()
    bodies = [tf_models.png(rgb) for rgb in tf_models.COLOURS.values()]
    pinned = infer(model, spec, bodies, device=CPU_DEVICE)
    # Unpinned is the CPU too without a GPU; on a GPU host TF32 matmuls differ ~1e-3.
    tolerance = 2e-3 if _has_gpu() else 1e-6
    np.testing.assert_allclose(np.stack(pinned), np.stack(infer(model, spec, bodies)),
                               rtol=tolerance, atol=tolerance)
    assert [int(row.argmax()) for row in pinned] == [0, 1, 2]
    # The per-body path (an undecodable neighbour) is pinned the same way.
    rows = infer(model, spec, [bodies[2], b"not an image"], device=CPU_DEVICE)
    assert int(rows[0].argmax()) == 2 and "not a decodable image" in str(rows[1])


def test_this_process_is_configured_for_what_tensorflow_lists() -> None:
    tf = _tensorflow()
    from triggers.devices import configure_tensorflow

    placement = configure_tensorflow(TensorFlowSettings())
    if tf.config.list_physical_devices("GPU"):
        assert placement.device == GPU_DEVICE and placement.gpus
    else:
        assert placement.device == CPU_DEVICE and placement.gpus == ()
    # Configured once: a later call only chooses, on what was found.
    assert configure_tensorflow(TensorFlowSettings(device="cpu")).device == CPU_DEVICE


async def _put(client: api.StorageClient, bucket: str, key: str, body: bytes) -> Any:
    async with client.open_upload(bucket, key) as upload:
        await upload.write(body)
        return await upload.commit(api.PutSpec(etag=hashlib.md5(body).hexdigest()))


async def _judging_store(tmp_path: Path, hook: Any, **definition: Any) -> Any:
    from tests.integration import tf_models

    client = await open_embedded(tmp_path, durable=False, pre_commit_hook=hook)
    for bucket in ("models", "b"):
        await client.create_bucket(bucket, "owner")
    await _put(client, "models", "c.keras", tf_models.colour_model())
    await hook.put_function("colours", json.dumps({
        "kind": "tensorflow", "model": "s3://models/c.keras",
        "input": {"format": "image", "scale": 1 / 255},
        "labels": ["red", "green", "blue"], **definition}).encode())
    rule = api.NotificationRule("function", "c", "arn:squall:function:colours",
                                ("s3:ObjectCreated:*",))
    await client.put_bucket_config("b", api.NOTIFICATION_CONFIG,
                                   api.NotificationConfiguration((rule,)).to_json())
    return client


def test_verdicts_and_show_carry_the_device(tmp_path: Path) -> None:
    _tensorflow()
    from tests.integration import tf_models
    from triggers.hook import TriggerHook

    expected = "GPU:0" if _has_gpu() else "CPU:0"
    hook = TriggerHook(inference_threads=1)

    async def scenario() -> None:
        client = await _judging_store(tmp_path, hook)
        try:
            version = await _put(client, "b", "k", tf_models.png(tf_models.COLOURS["blue"]))
            (step,) = version.verdict.summary["steps"]
            assert (step["label"], step["runtime"], step["device"]) == (
                "blue", "tensorflow", expected)
            status = (await hook.get_function("colours"))["status"]
            assert status["device"]["device"] == expected
            assert status["device"]["requested"] == "auto"
            (loaded,) = status["loaded_versions"]
            assert (loaded["runtime"], loaded["device"]) == ("tensorflow", expected)
        finally:
            await client.close()

    asyncio.run(scenario())


def test_gpu_requested_without_one_fails_every_batch_clearly(tmp_path: Path) -> None:
    """``--tensorflow-device gpu`` where TensorFlow lists no GPU: no model is loaded, a
    judged write is rejected (on_error: reject, 403) with the reason, or stored unjudged
    (on_error: store); ``squall function show`` says why. Never a 503."""
    _tensorflow()
    if _has_gpu():
        pytest.skip("TensorFlow lists a GPU here: the refusal needs a host without one")
    from tests.integration import tf_models
    from triggers.hook import TriggerHook

    hook = TriggerHook(inference_threads=1, tensorflow_device="gpu")
    red = tf_models.png(tf_models.COLOURS["red"])

    async def scenario() -> None:
        client = await _judging_store(tmp_path, hook)
        try:
            with pytest.raises(api.WriteRejected) as raised:
                await _put(client, "b", "k", red)
            assert NO_GPU_REASON in str(raised.value)
            assert "could not judge" in str(raised.value)
            status = (await hook.get_function("colours"))["status"]
            assert NO_GPU_REASON in status["device"]["error"]
            assert "device" not in status["device"]
            assert hook.models is not None and hook.models.loads == 0
            await hook.put_function("colours", json.dumps({
                "kind": "tensorflow", "model": "s3://models/c.keras", "on_error": "store",
                "input": {"format": "image", "scale": 1 / 255}}).encode())
            stored = await _put(client, "b", "k2", red)
            (step,) = stored.verdict.summary["steps"]
            assert step["action"] == "store" and NO_GPU_REASON in step["error"]
        finally:
            await client.close()

    asyncio.run(scenario())
