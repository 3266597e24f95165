"""``triggers.functions.infer``: the compiled batch pipeline (decode + scale + predict in
one graph) agrees with the per-body path, and a bad body fails only itself."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed (pip install -e '.[ml]')")

import numpy as np  # noqa: E402

from tests.integration import tf_models  # noqa: E402
from triggers.config import ObjectRef, definition_from_document  # noqa: E402
from triggers.functions import FunctionFailed, _decode, infer  # noqa: E402
from triggers.models import LoadedModel, load_keras_model  # noqa: E402


def _load(model_bytes: bytes) -> LoadedModel:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "m.keras"
        path.write_bytes(model_bytes)
        return load_keras_model(str(path), ObjectRef("models", "m.keras"), "v1")


def _spec(**input_: object):  # type: ignore[no-untyped-def]
    document = {"kind": "tensorflow", "model": "s3://m/k", "input": input_}
    return definition_from_document("f", document).input


def test_the_compiled_pipeline_matches_the_per_body_path() -> None:
    model = _load(tf_models.colour_model())
    spec = _spec(format="image", scale=1 / 255)
    bodies = [tf_models.png(rgb) for rgb in tf_models.COLOURS.values()]
    rows = infer(model, spec, bodies)
    assert model.pipelines[(spec, None)] is not None  # keyed by spec and model device
    expected = np.asarray(model.predict(np.stack(
        [_decode(body, spec, model.input_shape) for body in bodies])))
    np.testing.assert_allclose(np.stack(rows), expected, rtol=1e-6, atol=1e-6)
    assert [int(row.argmax()) for row in rows] == [0, 1, 2]
    # A resized input (16x16 PNG into the 8x8 model) goes through the same graph.
    big = infer(model, spec, [tf_models.png((230, 20, 20), size=16)])
    assert int(big[0].argmax()) == 0


def test_a_bad_body_fails_only_itself() -> None:
    model = _load(tf_models.colour_model())
    spec = _spec(format="image", scale=1 / 255)
    rows = infer(model, spec, [tf_models.png((20, 230, 20)), b"not an image",
                               memoryview(tf_models.png((20, 20, 230)))])
    assert int(rows[0].argmax()) == 1 and int(rows[2].argmax()) == 2
    assert isinstance(rows[1], FunctionFailed) and "not a decodable image" in str(rows[1])


def test_inputs_the_graph_cannot_take_use_the_per_body_path() -> None:
    vector = _load(tf_models.vector_model())
    rows = infer(vector, _spec(format="npy", scale=1), [tf_models.npy([1, 1, 1, 1]),
                                                        tf_models.npy([1, 2])])
    assert int(rows[0].argmax()) == 1
    assert isinstance(rows[1], FunctionFailed)
    # An image for a non-image model without input.size: no pipeline, a clear failure.
    spec = _spec(format="image")
    (row,) = infer(vector, spec, [tf_models.png((1, 2, 3))])
    assert vector.pipelines[(spec, None)] is None
    assert isinstance(row, FunctionFailed) and "give input.size" in str(row)
