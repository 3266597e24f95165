"""Train a tiny shape classifier on synthetic images, upload it to Squall, register it as
a pre-commit function and bind it to a bucket. No downloads: the data is generated here.

    make serve                                   # in one terminal
    .venv/bin/python examples/shapes/train_and_upload.py [--endpoint http://127.0.0.1:9000]

Labels: circle, square, noise. 16x16 RGB images of a filled shape in a random colour on a
dark background, or random noise. Training takes a few seconds on a laptop CPU.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

LABELS = ("circle", "square", "noise")
SIZE = 16


def make_image(label: str, rng: np.random.Generator) -> np.ndarray:
    """One uint8 HxWx3 image of ``label``."""
    if label == "noise":
        return rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    image = np.zeros((SIZE, SIZE, 3), np.uint8) + rng.integers(0, 40, 3, dtype=np.uint8)
    colour = rng.integers(120, 256, 3, dtype=np.uint8)
    radius = int(rng.integers(4, 7))
    cy, cx = rng.integers(radius, SIZE - radius, 2)
    ys, xs = np.mgrid[:SIZE, :SIZE]
    if label == "circle":
        mask = (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2
    else:
        mask = (abs(ys - cy) <= radius - 1) & (abs(xs - cx) <= radius - 1)
    image[mask] = colour
    return image


def dataset(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(LABELS), count)
    images = np.stack([make_image(LABELS[i], rng) for i in labels])
    return images.astype(np.float32) / 255.0, labels


def train(epochs: int = 6, seed: int = 0):  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(seed)
    images, labels = dataset(3000, seed)
    model = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(len(LABELS), activation="softmax"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=epochs, batch_size=64, verbose=2)
    test_images, test_labels = dataset(300, seed + 1)
    _, accuracy = model.evaluate(test_images, test_labels, verbose=0)
    print(f"held-out accuracy: {accuracy:.3f}")
    return model


def png(image: np.ndarray) -> bytes:
    import tensorflow as tf

    return bytes(tf.io.encode_png(image).numpy())


FUNCTION = """\
kind: tensorflow
description: circle / square / noise classifier trained by examples/shapes
model: s3://models/shapes.keras
input: {format: image, scale: 0.00392156862745098}
labels: s3://models/shapes.labels
top_k: 2
batching: {max_batch_size: 16, max_queue_delay_ms: 2}
actions:
  - annotate: true
  - when: {label: circle, score_min: 0.6}
    route: "sorted/{label}/{key}"
  - when: {label: noise}
    reject: "camera returned noise: not stored"
  - when: {score_max: 0.5}
    discard: "unsure: answered, not stored"
"""


def main() -> None:
    import boto3

    from squall.admin_client import AdminClient
    from squall.cli import DEV_ROOT_PASSWORD, DEV_ROOT_USER

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="http://127.0.0.1:9000")
    parser.add_argument("--bucket", default="camera")
    parser.add_argument("--samples", default="shape-samples", help="where to write sample PNGs")
    args = parser.parse_args()
    user = os.environ.get("SQUALL_ROOT_USER", DEV_ROOT_USER)
    password = os.environ.get("SQUALL_ROOT_PASSWORD", DEV_ROOT_PASSWORD)

    model = train()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "shapes.keras"
        model.save(path)
        model_bytes = path.read_bytes()

    s3 = boto3.client("s3", endpoint_url=args.endpoint, aws_access_key_id=user,
                      aws_secret_access_key=password, region_name="us-east-1")
    for bucket in ("models", args.bucket):
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket="models", Key="shapes.keras", Body=model_bytes)
    s3.put_object(Bucket="models", Key="shapes.labels", Body="\n".join(LABELS).encode())
    print(f"uploaded s3://models/shapes.keras ({len(model_bytes)} bytes)")

    registered = AdminClient(args.endpoint, user, password).put_function(
        "shapes", FUNCTION.encode())
    print(f"registered function shapes (version {registered['version_id']})")
    s3.put_bucket_notification_configuration(Bucket=args.bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [{
            "Id": "classify-uploads", "LambdaFunctionArn": "arn:squall:function:shapes",
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}}}]})
    print(f"bound shapes to s3://{args.bucket}/uploads/")

    samples = Path(args.samples)
    samples.mkdir(exist_ok=True)
    rng = np.random.default_rng(42)
    for label in LABELS:
        (samples / f"{label}.png").write_bytes(png(make_image(label, rng)))
    print(f"sample images in {samples}/: " + ", ".join(f"{label}.png" for label in LABELS))


if __name__ == "__main__":
    main()
