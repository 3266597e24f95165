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
