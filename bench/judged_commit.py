"""The server side of a judged write, in process: what judging adds to a commit.

An embedded store (``open_embedded``, volatile) with the real ``triggers.hook:TriggerHook``,
a model stored as an object (``--model``: the shapes model of ``examples/shapes`` trained
1 epoch here, 16x16 PNGs; or MobileNetV2 with random weights, 224x224 JPEGs) and a
tensorflow function bound to ``judged/``; one client, sequential. Paths, interleaved in
rounds (order rotated each round): ``commit`` = a plain write of the same image (no
function), ``judged`` = the same write judged by the function (batching off), ``infer`` =
``triggers.functions.infer`` alone, in this thread. Reported per path: p50 wall µs and
CPU µs per op (``time.process_time`` over the path's ops, every thread of the process:
steadier than wall time on a shared machine). TensorFlow's threads are sized as
``squall serve`` sizes them (``--intra-op-threads``, default 1), whatever the checkout
measured, and for ``infer`` too.

``--inline both`` runs ``judged`` twice per round, with short batches run inline on the
event loop (``judged``) and with every batch on a pool thread (``judged_thread``, by
setting ``limits.trigger_inline_batch_ms_max`` to 0 for its ops).

    .venv/bin/python bench/judged_commit.py
    .venv/bin/python bench/judged_commit.py --inline both --ops 2000
    .venv/bin/python bench/judged_commit.py --model mobilenetv2 --rounds 6

Run from another checkout's root with ``--code .`` to measure that checkout's store and
hook with this script (before/after comparisons).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    from storage import api
    from storage.client import open_embedded
    from triggers.config import ObjectRef, definition_from_document
    from triggers.functions import infer
    from triggers.hook import TriggerHook
    from triggers.models import load_keras_model

    # As this checkout's squall serve sizes them, for every checkout measured (so a
    # before/after comparison isolates the code around inference).
    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    if args.model == "mobilenetv2":
        model_bytes, images, content_type, input_spec, labels = _mobilenet(np, tf)
    else:
        model_bytes, images, content_type, input_spec, labels = _shapes(np)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.keras"
        path.write_bytes(model_bytes)
        local = load_keras_model(str(path), ObjectRef("models", "m"), "local")
    spec = definition_from_document("x", {"kind": "tensorflow", "model": "s3://m/k",
                                          "input": input_spec}).input

    hook = TriggerHook(inference_threads=args.inference_threads or None)
    with tempfile.TemporaryDirectory(prefix="squall-judged-") as data_dir:
        client = await open_embedded(Path(data_dir), durable=False, pre_commit_hook=hook)
        try:
            for bucket in ("models", "b"):
                await client.create_bucket(bucket, "owner")
            await put(client, "models", "model.keras", model_bytes,
                      "application/octet-stream")
            await hook.put_function("judge", json.dumps({
                "kind": "tensorflow", "model": "s3://models/model.keras",
                "input": input_spec, "labels": list(labels),
                "batching": {"max_batch_size": 1, "max_queue_delay_ms": 0},
                "actions": [{"annotate": True}]}).encode())
            configuration = api.NotificationConfiguration((api.NotificationRule(
                "function", "judge", "arn:squall:function:judge", ("s3:ObjectCreated:*",),
                (("prefix", "judged/"),)),))
            await client.put_bucket_config("b", api.NOTIFICATION_CONFIG,
                                           configuration.to_json())
            inline_ms = getattr(api.limits, "trigger_inline_batch_ms_max", 0.0)

            async def commit(n: int) -> None:
                await put(client, "b", f"plain/{n}", images[n % len(images)], content_type)

            async def judged(n: int) -> None:
                version = await put(client, "b", f"judged/{n}", images[n % len(images)],
                                    content_type)
                assert version.verdict is not None and version.verdict.label

            async def judged_thread(n: int) -> None:
                api.limits.trigger_inline_batch_ms_max = 0.0
                try:
                    await judged(n)
                finally:
                    api.limits.trigger_inline_batch_ms_max = inline_ms

            async def bare(n: int) -> None:
                infer(local, spec, [images[n % len(images)]])

            paths = {"commit": commit, "judged": judged, "infer": bare}
            if args.inline == "both":
                paths["judged_thread"] = judged_thread
            if args.paths:
                paths = {name: paths[name] for name in args.paths.split(",")}
            for operation in paths.values():  # warm-up: load, trace, fill caches
                for n in range(50):
                    await operation(n)
            wall: dict[str, list[float]] = {name: [] for name in paths}
            cpu: dict[str, float] = dict.fromkeys(paths, 0.0)
            names = list(paths)
            per_round = args.ops // args.rounds
            serial = 1000
            for round_index in range(args.rounds):
                shift = round_index % len(names)
                for name in names[shift:] + names[:shift]:
                    operation = paths[name]
                    cpu_began = time.process_time()
                    for _ in range(per_round):
                        serial += 1
                        began = time.perf_counter()
                        await operation(serial)
                        wall[name].append(time.perf_counter() - began)
                    cpu[name] += time.process_time() - cpu_began
        finally:
            await client.close()
    return {name: {"p50_us": round(statistics.median(wall[name]) * 1e6, 1),
                   "cpu_us_per_op": round(cpu[name] / len(wall[name]) * 1e6, 1),
                   "ops": len(wall[name])} for name in wall}


def _shapes(np: Any) -> tuple[bytes, list[bytes], str, dict[str, Any], tuple[str, ...]]:
    """The example's model (trainer loaded by path, not bench/ml_pipeline, which needs
    THIS checkout's triggers: --code may name another), trained 1 epoch; 16x16 PNGs."""
    import importlib.util

    module_spec = importlib.util.spec_from_file_location(
        "shapes_train", ROOT / "examples" / "shapes" / "train_and_upload.py")
    assert module_spec is not None and module_spec.loader is not None
    shapes = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(shapes)
    with contextlib.redirect_stdout(io.StringIO()):
        model = shapes.train(epochs=1)
    rng = np.random.default_rng(7)
    images = [shapes.png(shapes.make_image(shapes.LABELS[i % 3], rng)) for i in range(32)]
    return (_keras_bytes(model), images, "image/png", {"format": "image", "scale": 1 / 255},
            tuple(shapes.LABELS))


def _mobilenet(np: Any, tf: Any) -> tuple[bytes, list[bytes], str, dict[str, Any],
                                          tuple[str, ...]]:
    """MobileNetV2 with random weights (as bench/ml_pipeline.py): 224x224 JPEGs of smooth
    gradients and noise (the pixels do not matter to the cost, the size does)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(weights=None, input_shape=(224, 224, 3),
                                           classes=10)
    rng = np.random.default_rng(11)
    images = []
    for _ in range(16):
        ys, xs = np.mgrid[:224, :224].astype(np.float32) / 224
        image = 128 + 80 * np.sin(rng.uniform(-3, 3) * xs[..., None]
                                  + rng.uniform(-3, 3, 3) * ys[..., None])
        image += rng.normal(0, 6, image.shape)
        pixels = np.clip(image, 0, 255).astype(np.uint8)
        images.append(bytes(tf.io.encode_jpeg(pixels, quality=90).numpy()))
    return (_keras_bytes(model), images, "image/jpeg",
            {"format": "image", "scale": 1 / 127.5, "offset": -1.0},
            tuple(f"class{i}" for i in range(10)))


def _keras_bytes(model: Any) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        model.save(Path(directory) / "model.keras")
        return (Path(directory) / "model.keras").read_bytes()


async def put(client: Any, bucket: str, key: str, body: bytes, content_type: str) -> Any:
    import hashlib

    from storage import api

    async with client.open_upload(bucket, key) as upload:
        await upload.write(body)
        return await upload.commit(api.PutSpec(etag=hashlib.md5(body).hexdigest(),
                                               content_type=content_type))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("shapes", "mobilenetv2"), default="shapes")
    parser.add_argument("--ops", type=int, default=0,
                        help="per path (default: 1500 shapes, 300 mobilenetv2)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--inline", choices=("default", "both"), default="default")
    parser.add_argument("--intra-op-threads", type=int, default=1)
    parser.add_argument("--inference-threads", type=int, default=0,
                        help="the hook's inference pool (default: as squall serve, the cores)")
    parser.add_argument("--paths", default="", help="a subset, e.g. judged (to profile it)")
    parser.add_argument("--code", default=str(ROOT),
                        help="the checkout whose storage and triggers are measured")
    args = parser.parse_args()
    args.ops = args.ops or (1500 if args.model == "shapes" else 300)
    sys.path.insert(0, str(Path(args.code).resolve()))
    load_before = os.getloadavg()
    results = asyncio.run(measure(args))
    print(f"code: {Path(args.code).resolve()}; load average {load_before} -> "
          f"{os.getloadavg()}")
    print(f"{'path':14} {'p50 us':>9} {'CPU us/op':>10} {'ops':>6}")
    for name, entry in results.items():
        print(f"{name:14} {entry['p50_us']:9.1f} {entry['cpu_us_per_op']:10.1f} "
              f"{entry['ops']:6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
