"""Tiny Keras models with hand-set weights (deterministic labels, no training) and the
inputs they classify, for the TensorFlow trigger tests."""

from __future__ import annotations

import io
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

COLOURS = {"red": (230, 20, 20), "green": (20, 230, 20), "blue": (20, 20, 230)}


def png(rgb: tuple[int, int, int], size: int = 8) -> bytes:
    """A solid-colour RGB PNG, encoded by hand (no imaging library needed)."""
    row = b"\x00" + bytes(rgb) * size
    raw = row * size

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def colour_model(permutation: tuple[int, int, int] = (0, 1, 2)) -> bytes:
    """8x8 RGB -> mean colour -> Dense softmax over 3 classes: class permutation[c] for an
    image whose strongest channel is c. The .keras file's bytes."""
    import keras

    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(pooled)
    model = keras.Model(inputs, outputs)
    kernel = np.full((3, 3), -10.0, np.float32)
    for channel, label_index in enumerate(permutation):
        kernel[channel, label_index] = 10.0
    model.layers[-1].set_weights([kernel, np.zeros(3, np.float32)])
    return _keras_bytes(model)


def vector_model() -> bytes:
    """4-vector -> Dense softmax over 2 classes: 'positive' when the sum is > 0."""
    import keras

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, activation="softmax")(inputs)
    model = keras.Model(inputs, outputs)
    kernel = np.array([[-5.0, 5.0]] * 4, np.float32)
    model.layers[-1].set_weights([kernel, np.zeros(2, np.float32)])
    return _keras_bytes(model)


def slow_model(side: int = 64, filters: int = 32) -> bytes:
    """side x side x 3 -> two 3x3 convolutions -> mean -> 2 classes: tens of millions of
    multiply-adds per image (milliseconds of inference) from a file of a few KiB, so
    that batches run long enough to overlap. Labels depend on nothing useful."""
    import keras

    keras.utils.set_random_seed(1)
    inputs = keras.Input((side, side, 3))
    hidden = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(inputs)
    hidden = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(hidden)
    pooled = keras.layers.GlobalAveragePooling2D()(hidden)
    outputs = keras.layers.Dense(2, activation="softmax")(pooled)
    return _keras_bytes(keras.Model(inputs, outputs))


def _keras_bytes(model: object) -> bytes:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "model.keras"
        model.save(path)  # type: ignore[attr-defined]
        return path.read_bytes()


def npy(vector: list[float] | np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(vector, np.float32))
    return buffer.getvalue()


def _archive(directory: Path, kind: str, prefix: str) -> bytes:
    """The files under ``directory`` as a 'tar', 'tar.gz' or 'zip' archive, each member
    named ``prefix + its relative path`` (prefix '' puts them at the archive's root)."""
    import tarfile
    import zipfile

    files = sorted(p for p in directory.rglob("*") if p.is_file())
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, prefix + path.relative_to(directory).as_posix())
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz" if kind == "tar.gz" else "w") as archive:
            for path in files:
                archive.add(path, prefix + path.relative_to(directory).as_posix())
    return buffer.getvalue()


def saved_model_archive(model_bytes: bytes, kind: str = "tar.gz", prefix: str = "model/") -> bytes:
    """A Keras model (its .keras bytes) exported as a SavedModel (``model.export``: a
    ``serving_default`` signature) and archived: the same weights in the other format."""
    import contextlib

    import keras

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.keras"
        path.write_bytes(model_bytes)
        model = keras.saving.load_model(path, compile=False)
        with contextlib.redirect_stdout(io.StringIO()):  # export prints its signature
            model.export(str(Path(directory) / "saved"))
        return _archive(Path(directory) / "saved", kind, prefix)


def module_archive(function: object, input_shape: tuple[int, ...], kind: str = "tar.gz") -> bytes:
    """A SavedModel of a ``tf.Module`` whose serving signature is ``function(batch)``
    (float32 [None, *input_shape] -> [None, outputs]), archived."""
    import tensorflow as tf

    class Served(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, *input_shape), tf.float32)])
        def serve(self, batch: object) -> object:
            return {"scores": function(batch)}  # type: ignore[operator]

    module = Served()
    with tempfile.TemporaryDirectory() as directory:
        tf.saved_model.save(module, directory,
                            signatures={"serving_default": module.serve.get_concrete_function()})
        return _archive(Path(directory), kind, "")


def unconvertible_archive() -> bytes:
    """4-vector -> 2 scores through tf.math.igamma, an op LiteRT's converter refuses
    ("'tf.Igamma' op is neither a custom op nor a flex op")."""
    import tensorflow as tf

    def scores(batch: object) -> object:
        positive = tf.abs(batch) + 1.0  # type: ignore[operator]
        value = tf.reduce_sum(tf.math.igamma(positive, positive), axis=1, keepdims=True)
        return tf.concat([value, -value], axis=1)

    return module_archive(scores, (4,))


def ill_conditioned_archive() -> bytes:
    """8x8 RGB -> sin(1e7 * mean): a model so ill-conditioned that float32 rounding
    differences in the mean (LiteRT and TensorFlow sum in different orders) change its
    outputs by far more than any tolerance; TensorFlow itself gives it a definite answer."""
    import tensorflow as tf

    def scores(batch: object) -> object:
        mean = tf.reduce_mean(tf.exp(batch) * 3.3, axis=[1, 2, 3])  # type: ignore[arg-type]
        wave = tf.sin(1e7 * mean)
        return tf.stack([wave, -wave], axis=1)

    return module_archive(scores, (8, 8, 3))
