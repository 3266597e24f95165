"""The GPU conformance suite: tensorflow functions on a GPU, through real servers and boto3.

It runs the judged-PUT checks of the CPU suite (tests/integration/test_triggers_tf.py,
imported below: the same test functions, collected here against this module's server)
on ``squall serve --tensorflow-device gpu --gpu-memory-limit-mib N``, then checks what
only a GPU shows: every verdict step says ``GPU:0``; labels and scores equal those of a
``--tensorflow-device cpu`` server on the same models and bodies within
``SCORE_TOLERANCE``; ``squall function show`` reports the GPU and its memory setting;
and the servers take bounded GPU memory (``nvidia-smi``, where it lists them).

Skipped, with the reason, where TensorFlow lists no GPU (tensorflow-cpu, the 'ml' extra,
or no CUDA device): install the 'ml-gpu' extra on a host with a CUDA GPU and run
``pytest -m gpu``. What is checked on the CPU instead: tests/unit/test_triggers_devices.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from squall.launcher import ServerProcess
from tests.integration import triggers_support as support
from triggers.devices import NO_GPU_REASON

tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed (pip install -e "
                         "'.[ml-gpu]')")
if not tf.config.list_physical_devices("GPU"):
    pytest.skip(NO_GPU_REASON, allow_module_level=True)

from tests.integration import tf_models  # noqa: E402  (needs TensorFlow)
from tests.integration.test_triggers_tf import (  # noqa: E402, F401  (collected here)
    colours_function,
    put_png,
    test_batching_under_concurrency,
    test_chain_from_a_classifier_to_a_python_function,
    test_classify_annotate_route_reject_discard,
    test_model_update_mid_stream_switches_atomically,
    test_npy_tensors_and_labels_object,
    test_pinned_model_version,
    test_saved_model_archive_judges_like_the_keras_model,
    test_the_next_write_after_a_model_put_uses_it,
    upload_model,
)

pytestmark = [pytest.mark.slow, pytest.mark.tf, pytest.mark.gpu]

GPU_MEMORY_LIMIT_MIB = 2048  # the logical device of the --tensorflow-device gpu server
# What a process holds on a GPU besides TensorFlow's allocator: the CUDA context, cuDNN
# and cuBLAS handles (~0.5-1 GiB on recent drivers).
CUDA_CONTEXT_MIB_MAX = 1536
# The memory-growth server judges a few tiny models: it needs far less than this; without
# memory growth TensorFlow would map nearly the whole GPU.
GROWTH_SERVER_MIB_MAX = 4096
# TensorFlow runs float32 matmuls and convolutions in TF32 on Ampere and later GPUs (a
# 10-bit mantissa: ~1e-3 relative), and verdict scores are rounded to 4 digits.
SCORE_TOLERANCE = 2e-3


def _server(tmp_path_factory: pytest.TempPathFactory, *args: str) -> Iterator[ServerProcess]:
    """A ``squall serve`` with ``args``, started without the test process's own GPU
    memory override (tests/conftest.py): its GPU memory is what its flags make it."""
    server = ServerProcess(tmp_path_factory.mktemp("gpu-data"), access_key=support.ACCESS_KEY,
                           secret_key=support.SECRET_KEY, extra_args=("--volatile", *args))
    saved = os.environ.pop("TF_FORCE_GPU_ALLOW_GROWTH", None)
    try:
        server.start()
    finally:
        if saved is not None:
            os.environ["TF_FORCE_GPU_ALLOW_GROWTH"] = saved
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The server the CPU suite's tests run against here (as that suite's: 2 threads)."""
    yield from _server(tmp_path_factory, "--inference-threads", "2",
                       "--tensorflow-device", "gpu",
                       "--gpu-memory-limit-mib", str(GPU_MEMORY_LIMIT_MIB))


@pytest.fixture(scope="module")
def s3(process: ServerProcess):  # type: ignore[no-untyped-def]
    client = support.s3_client(process.url)
    client.create_bucket(Bucket="models")
    return client


_buckets = iter(range(1_000_000))


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    name = f"gpu-{next(_buckets)}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def cpu_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _server(tmp_path_factory, "--tensorflow-device", "cpu")


@pytest.fixture(scope="module")
def growth_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The default: --tensorflow-device auto, memory growth."""
    yield from _server(tmp_path_factory)


def _judge_everywhere(servers: dict[str, ServerProcess]) -> dict[str, list[dict[str, Any]]]:
    """The same models, functions and bodies on each server: its verdict steps."""
    bodies = [("colours", tf_models.png(tf_models.COLOURS[colour]), colour)
              for colour in tf_models.COLOURS]
    bodies.append(("colours", tf_models.png(tf_models.COLOURS["green"], size=16), "green"))
    slow_images = [tf_models.png(rgb, size=64) for rgb in
                   ((200, 10, 90), (15, 160, 240), (128, 128, 128))]
    bodies += [("convolutions", body, None) for body in slow_images]
    steps: dict[str, list[dict[str, Any]]] = {}
    for name, server in servers.items():
        client = support.s3_client(server.url)
        for model_bucket in ("models", f"compare-{name}"):
            if model_bucket not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
                client.create_bucket(Bucket=model_bucket)
        upload_model(client, "compare-colours.keras", tf_models.colour_model())
        upload_model(client, "compare-slow.keras", tf_models.slow_model())
        support.register(server, "colours-compare", colours_function("compare-colours.keras"))
        support.register(server, "convolutions", {
            "kind": "tensorflow", "model": "s3://models/compare-slow.keras",
            "input": {"format": "image", "scale": 1 / 255}, "labels": ["a", "b"],
            "top_k": 2})
        client.put_bucket_notification_configuration(
            Bucket=f"compare-{name}", NotificationConfiguration={
                "LambdaFunctionConfigurations": [
                    {"Id": function, "LambdaFunctionArn": support.FUNCTION_ARN.format(function),
                     "Events": ["s3:ObjectCreated:*"],
                     "Filter": {"Key": {"FilterRules": [{"Name": "prefix",
                                                         "Value": f"{prefix}/"}]}}}
                    for function, prefix in (("colours-compare", "colours"),
                                             ("convolutions", "convolutions"))]})
        steps[name] = []
        for number, (prefix, body, expected) in enumerate(bodies):
            response = client.put_object(Bucket=f"compare-{name}", Key=f"{prefix}/{number}",
                                         Body=body)
            (step,) = support.verdict(response)["steps"]
            if expected is not None:
                assert step["label"] == expected, (name, step)
            steps[name].append(step)
    return steps


def test_verdicts_say_gpu_and_agree_with_the_cpu(process, cpu_process) -> None:  # type: ignore[no-untyped-def]
    steps = _judge_everywhere({"gpu": process, "cpu": cpu_process})
    assert {step["device"] for step in steps["gpu"]} == {"GPU:0"}
    assert {step["device"] for step in steps["cpu"]} == {"CPU:0"}
    for on_gpu, on_cpu in zip(steps["gpu"], steps["cpu"], strict=True):
        assert on_gpu["runtime"] == on_cpu["runtime"] == "tensorflow"
        assert on_gpu["score"] == pytest.approx(on_cpu["score"], abs=SCORE_TOLERANCE)
        gpu_scores, cpu_scores = dict(on_gpu["top"]), dict(on_cpu["top"])
        assert gpu_scores.keys() == cpu_scores.keys()
        for label, score in cpu_scores.items():
            assert gpu_scores[label] == pytest.approx(score, abs=SCORE_TOLERANCE)
        # The label is the same unless the CPU's top two are closer than the tolerance.
        (first, first_score), (_, second_score) = on_cpu["top"][:2]
        if first_score - second_score > 2 * SCORE_TOLERANCE:
            assert on_gpu["label"] == first


def test_show_reports_the_gpu_and_its_memory(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    upload_model(s3, "show.keras", tf_models.colour_model())
    support.register(process, "shown", colours_function("show.keras"))
    support.bind(s3, bucket, "shown")
    assert support.verdict(put_png(s3, bucket, "r.png", "red"))["steps"][0]["device"] == "GPU:0"
    result = support.squall_cli(process, "show", "shown")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)["status"]
    device = status["device"]
    assert (device["requested"], device["device"]) == ("gpu", "GPU:0")
    assert device["gpu_memory"] == f"limit {GPU_MEMORY_LIMIT_MIB} MiB" and device["gpus"]
    (loaded,) = status["loaded_versions"]
    assert (loaded["runtime"], loaded["device"]) == ("tensorflow", "GPU:0")


def _gpu_memory_mib_by_pid() -> dict[int, int]:
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory",
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as error:
        pytest.skip(f"nvidia-smi cannot list GPU processes here: {error}")
    used: dict[int, int] = {}
    for line in listed.splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and mib.strip().isdigit():
            used[int(pid)] = used.get(int(pid), 0) + int(mib)
    return used


def test_the_servers_take_bounded_gpu_memory(process, growth_process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    """The limited server within its limit (plus the CUDA context); the memory-growth
    server far below a whole GPU, after judging on both."""
    upload_model(s3, "memory.keras", tf_models.slow_model())
    support.register(process, "memory", {
        "kind": "tensorflow", "model": "s3://models/memory.keras",
        "input": {"format": "image", "scale": 1 / 255}, "labels": ["a", "b"]})
    support.bind(s3, bucket, "memory")
    s3.put_object(Bucket=bucket, Key="m.png", Body=tf_models.png((1, 2, 3), size=64))
    growth = support.s3_client(growth_process.url)
    growth.create_bucket(Bucket="models")
    growth.create_bucket(Bucket="judged")
    upload_model(growth, "memory.keras", tf_models.slow_model())
    support.register(growth_process, "memory", {
        "kind": "tensorflow", "model": "s3://models/memory.keras",
        "input": {"format": "image", "scale": 1 / 255}, "labels": ["a", "b"]})
    support.bind(growth, "judged", "memory")
    step = support.verdict(growth.put_object(Bucket="judged", Key="m.png",
                                             Body=tf_models.png((1, 2, 3), size=64)))
    assert step["steps"][0]["device"] == "GPU:0"  # auto: the GPU TensorFlow lists
    used = _gpu_memory_mib_by_pid()
    pids = {"limited": process.process.pid, "growth": growth_process.process.pid}
    if not set(pids.values()) <= used.keys():
        pytest.skip(f"nvidia-smi does not list the servers' processes {pids} (another PID "
                    f"namespace?): it lists {sorted(used)}")
    assert used[pids["limited"]] <= GPU_MEMORY_LIMIT_MIB + CUDA_CONTEXT_MIB_MAX, used
    assert used[pids["growth"]] <= GROWTH_SERVER_MIB_MAX, used
