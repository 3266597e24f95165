"""SavedModel archives through the ``ModelCache`` (a real embedded store) and ``infer``;
``runtime: litert``: conversion, probe verification and the TensorFlow fallback, with
real tiny models built here."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed (pip install -e '.[ml]')")

import numpy as np  # noqa: E402

from storage import api  # noqa: E402
from storage.client import open_embedded  # noqa: E402
from tests.integration import tf_models  # noqa: E402
from triggers.config import FunctionDefinition, ObjectRef, definition_from_document  # noqa: E402
from triggers.functions import infer, select_runtime  # noqa: E402
from triggers.litert import (  # noqa: E402
    OUTPUT_TOLERANCE_ABS,
    OUTPUT_TOLERANCE_REL,
    compare_outputs,
    runtime_of,
)
from triggers.models import LoadedModel, ModelCache  # noqa: E402

pytestmark = pytest.mark.tf

COLOUR_BODIES = [tf_models.png(rgb) for rgb in tf_models.COLOURS.values()]


def litert_installed() -> None:
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed "
                        "(pip install -e '.[ml]')")


def load(tmp_path: Path, body: bytes, key: str = "m") -> tuple[LoadedModel, ModelCache]:
    """Store ``body`` as s3://models/KEY in an embedded store and load it through the
    ModelCache, as a function's first batch does."""

    async def scenario() -> tuple[LoadedModel, ModelCache]:
        client = await open_embedded(tmp_path / key, durable=False)
        try:
            await client.create_bucket("models", "owner")
            async with client.open_upload("models", key) as upload:
                await upload.write(body)
                await upload.commit(api.PutSpec(etag="e"))
            cache = ModelCache(client)
            return await cache.get(ObjectRef("models", key)), cache
        finally:
            await client.close()

    return asyncio.run(scenario())


def definition(**fields: Any):  # type: ignore[no-untyped-def]
    document = {"kind": "tensorflow", "model": "s3://models/m",
                "input": {"format": "image", "scale": 1 / 255}, **fields}
    return definition_from_document("f", document)


@pytest.mark.parametrize("kind, prefix", [("tar.gz", "model/"), ("zip", ""), ("tar", "")])
def test_a_saved_model_archive_judges_like_the_keras_model(
    tmp_path: Path, kind: str, prefix: str
) -> None:
    keras_bytes = tf_models.colour_model()
    archive = tf_models.saved_model_archive(keras_bytes, kind, prefix)
    saved, cache = load(tmp_path, archive, "colours.model")  # the name says nothing
    keras, _ = load(tmp_path, keras_bytes, "colours.keras")
    assert (saved.format, keras.format) == ("saved_model", "keras")
    assert saved.input_shape == keras.input_shape == (8, 8, 3) and saved.output_size == 3
    assert saved.output_name == "output_0"
    spec = definition().input
    rows, expected = infer(saved, spec, COLOUR_BODIES), infer(keras, spec, COLOUR_BODIES)
    np.testing.assert_allclose(np.stack(rows), np.stack(expected), rtol=1e-6, atol=1e-6)
    assert [int(row.argmax()) for row in rows] == [0, 1, 2]
    assert cache.status(ObjectRef("models", "colours.model"))[0]["format"] == "saved_model"


def test_the_temporary_directory_is_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    load(tmp_path, tf_models.saved_model_archive(tf_models.colour_model()))
    assert list((tmp_path / "tmp").iterdir()) == []
    with pytest.raises(api.InvalidArgument):  # refused half way: deleted all the same
        load(tmp_path, tf_models.saved_model_archive(tf_models.colour_model())[:-300], "cut")
    assert list((tmp_path / "tmp").iterdir()) == []


def test_unusable_archives_are_clear_errors(tmp_path: Path) -> None:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.addfile(tarfile.TarInfo("../x"), io.BytesIO(b""))
    with pytest.raises(api.InvalidArgument, match="is not a usable SavedModel archive: "
                       "member '../x': '..' is refused"):
        load(tmp_path, buffer.getvalue(), "hostile")
    flat = tf_models.module_archive(lambda b: tf.reduce_sum(b, axis=1), (4,))
    with pytest.raises(api.InvalidArgument, match=r"is not a loadable SavedModel: "
                       r"serving_default output 'scores' has shape \(1,\); \[batch"):
        load(tmp_path, flat, "flat")
    broken = tf_models.saved_model_archive(tf_models.colour_model())[:-300]
    with pytest.raises(api.InvalidArgument, match="not a usable SavedModel archive: malformed"):
        load(tmp_path, broken, "broken")


def converted(model: LoadedModel, fn: FunctionDefinition) -> tuple[Any, str]:
    """``select_runtime`` once the background conversion that its first call starts has
    ended; the batches before that run on TensorFlow."""
    assert select_runtime(model, fn) == (None, "tensorflow")  # starts the conversion
    assert runtime_of(model).wait_converted(300), "the conversion did not end"
    return select_runtime(model, fn)


def test_litert_gives_the_same_rows_and_says_so(tmp_path: Path) -> None:
    litert_installed()
    for body in (tf_models.colour_model(), tf_models.saved_model_archive(
            tf_models.colour_model(), "zip")):
        model, cache = load(tmp_path, body, f"m{len(body)}")
        tensorflow_rows = infer(model, definition().input, COLOUR_BODIES)
        predict, runtime = converted(model, definition(runtime="litert"))
        assert runtime == "litert" and predict is not None
        rows = infer(model, definition().input, COLOUR_BODIES, predict)
        np.testing.assert_allclose(np.stack(rows), np.stack(tensorflow_rows), atol=1e-5)
        # Batches of 1, 3, 1 again: interpreters are resized or reused, never shared.
        assert int(infer(model, definition().input, COLOUR_BODIES[2:], predict)[0].argmax()) == 2
        status = model.status()["litert"]
        assert status["state"] == "litert" and status["max_difference"] < OUTPUT_TOLERANCE_ABS
        assert status["flatbuffer_bytes"] > 0 and model.memory_bytes() > model.size_bytes
        assert select_runtime(model, definition())[1] == "tensorflow"


def test_litert_npy_path_and_concurrent_threads(tmp_path: Path) -> None:
    litert_installed()
    from concurrent.futures import ThreadPoolExecutor

    model, _ = load(tmp_path, tf_models.vector_model())
    fn = definition(runtime="litert", litert_threads=1, input={"format": "npy", "scale": 1})
    predict, runtime = converted(model, fn)
    assert runtime == "litert"
    vectors = [[1, 1, 1, 1], [-1, -2, 0, 0], [3, -1, 0, 0]]

    def judge(n: int) -> list[int]:
        bodies = [tf_models.npy(vectors[(n + i) % 3]) for i in range(1 + n % 3)]
        return [int(r.argmax()) for r in infer(model, fn.input, bodies, predict)]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(judge, range(48)))
    expected = [1, 0, 1]
    assert all(r == [expected[(n + i) % 3] for i in range(len(r))] for n, r in enumerate(results))
    pools = model.status()["litert"]["interpreters"]
    assert 1 <= pools["1"] <= api.limits.litert_interpreters_per_model_max


def test_the_comparison_and_its_tolerance() -> None:
    expected = np.array([[0.2, 0.8], [1000.0, -5.0]], np.float32)
    assert compare_outputs(expected, expected) == (True, 0.0)
    near = expected + np.array([[OUTPUT_TOLERANCE_ABS * 0.9, 0], [1000 * OUTPUT_TOLERANCE_REL, 0]])
    assert compare_outputs(expected, near)[0]
    # 0.2 may move by ABS + REL * 0.2 (3e-4 with the constants of today): 1e-3 is too far.
    step = 2 * (OUTPUT_TOLERANCE_ABS + OUTPUT_TOLERANCE_REL * 0.2)
    far = expected + np.array([[step, 0], [0, 0]])
    match, difference = compare_outputs(expected, far)
    assert not match and difference == pytest.approx(step, rel=1e-3)
    assert not compare_outputs(expected, expected[:1])[0]  # a different shape
    assert not compare_outputs(expected, np.where(expected > 500, np.nan, expected))[0]


def test_an_op_the_converter_refuses_falls_back(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    litert_installed()
    model, cache = load(tmp_path, tf_models.unconvertible_archive())
    fn = definition(runtime="litert", input={"format": "npy", "scale": 1})
    with caplog.at_level(logging.WARNING, logger="triggers.litert"):
        assert converted(model, fn) == (None, "tensorflow")
        assert select_runtime(model, fn) == (None, "tensorflow")  # not tried again
    status = model.status()["litert"]
    assert status["state"] == "tensorflow"
    assert "the converter refused it" in status["reason"] and "Igamma" in status["reason"]
    assert len([r for r in caplog.records if "falls back" in r.message]) == 1
    rows = infer(model, fn.input, [tf_models.npy([1, 2, 3, 4])])  # TensorFlow still judges
    assert rows[0].shape == (2,)
    assert model.memory_bytes() == model.size_bytes  # nothing kept for LiteRT


def test_outputs_that_differ_fall_back(tmp_path: Path) -> None:
    litert_installed()
    model, _ = load(tmp_path, tf_models.ill_conditioned_archive())
    assert converted(model, definition(runtime="litert")) == (None, "tensorflow")
    status = model.status()["litert"]
    assert status["state"] == "tensorflow" and status["max_difference"] > 0.01
    assert "outputs differ from TensorFlow's by up to" in status["reason"]


def test_without_ai_edge_litert_it_falls_back(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = load(tmp_path, tf_models.colour_model())
    # The package absent, as on a machine without it (None in sys.modules: ImportError).
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    assert converted(model, definition(runtime="litert")) == (None, "tensorflow")
    assert runtime_of(model).reason.startswith("ai-edge-litert is not installed")


def test_litert_bytes_count_in_the_cache_budget(tmp_path: Path) -> None:
    """Three colour models (48 weight bytes each) fit the budget; when the LEAST recently
    used one, a, gets its LiteRT flatbuffer (on the conversion thread) and then an
    interpreter (on a pool thread), the cache evicts the others at once, b then c, with
    no other model loading, and keeps a: it is the one in use."""
    litert_installed()
    fn = definition(runtime="litert")
    # The flatbuffer's size, from a throwaway conversion of the same model.
    probe_model, _ = load(tmp_path, tf_models.colour_model(), "z")
    assert converted(probe_model, fn)[1] == "litert"
    flatbuffer_bytes = probe_model.status()["litert"]["flatbuffer_bytes"]
    assert flatbuffer_bytes > 3 * probe_model.size_bytes  # else the budget below proves nothing

    async def scenario() -> None:
        client = await open_embedded(tmp_path / "store", durable=False)
        try:
            await client.create_bucket("models", "owner")
            for key in ("a", "b", "c"):
                async with client.open_upload("models", key) as upload:
                    await upload.write(tf_models.colour_model())
                    await upload.commit(api.PutSpec(etag="e"))
            weight_bytes = probe_model.size_bytes
            # a's weights and flatbuffer plus ONE other model fit; plus two do not.
            budget_bytes = 2 * weight_bytes + flatbuffer_bytes + weight_bytes // 2
            cache = ModelCache(client, budget_bytes=budget_bytes)
            first = await cache.get(ObjectRef("models", "a"))
            await cache.get(ObjectRef("models", "b"))
            await cache.get(ObjectRef("models", "c"))
            assert cache.evictions == 0 and cache.cached_bytes == 3 * weight_bytes
            # The conversion ends on its own thread; the cache hears of it on the loop
            # before this coroutine resumes (both handed over in order).
            predict, runtime = await asyncio.to_thread(converted, first, fn)
            assert runtime == "litert" and predict is not None
            assert [key for _, key, _ in cache.cached_versions()] == ["c", "a"]
            assert cache.evictions == 1 and cache.cached_bytes <= budget_bytes
            # Its first interpreter: one more flatbuffer's worth, so c goes too.
            await asyncio.to_thread(infer, first, fn.input, COLOUR_BODIES[:1], predict)
            assert first.memory_bytes() == weight_bytes + 2 * first.status()["litert"][
                "flatbuffer_bytes"]
            assert [key for _, key, _ in cache.cached_versions()] == ["a"]
            assert cache.evictions == 2
            # A model loaded now evicts a, the least recently used, as an insertion does.
            await cache.get(ObjectRef("models", "b"))
            assert [key for _, key, _ in cache.cached_versions()] == ["b"]
        finally:
            await client.close()

    asyncio.run(scenario())


def test_a_litert_failure_after_verification_reruns_the_batch_on_tensorflow(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An interpreter that raises on a real batch (the probe passed) through the test
    hook: the writes of that batch are judged by TensorFlow, the version falls back for
    good, logged once, with the reason in its status."""
    litert_installed()
    from storage.api import WriteEvent
    from triggers.batching import InferencePool
    from triggers.functions import TensorFlowFunction
    from triggers.models import LabelCache

    fn = definition(runtime="litert", labels=["red", "green", "blue"],
                    batching={"max_batch_size": 8, "max_queue_delay_ms": 50})

    def event(number: int, body: bytes) -> WriteEvent:
        return WriteEvent("b", f"k{number}", "s3:ObjectCreated:Put", len(body), "image/png",
                          {}, [memoryview(body)])

    async def scenario() -> None:
        client = await open_embedded(tmp_path, durable=False)
        pool = InferencePool(2)
        try:
            await client.create_bucket("models", "owner")
            async with client.open_upload("models", "m") as upload:
                await upload.write(tf_models.colour_model())
                await upload.commit(api.PutSpec(etag="e"))
            models = ModelCache(client)
            function = TensorFlowFunction(fn, models, LabelCache(client), pool)
            model = await models.get(ObjectRef("models", "m"))
            assert (await asyncio.to_thread(converted, model, fn))[1] == "litert"
            first, _ = await function.predict(event(0, COLOUR_BODIES[0]))
            assert (first.label, first.runtime) == ("red", "litert")
            runtime_of(model).invoke_fault_for_tests = RuntimeError(
                "tensorflow/lite/kernels/conv.cc: Node number 3 (CONV_2D) failed to invoke")
            caplog.clear()
            results = await asyncio.gather(*(function.predict(event(n, body)) for n, body in
                                             enumerate(COLOUR_BODIES * 3)))
            assert [p.label for p, _ in results] == ["red", "green", "blue"] * 3
            assert {p.runtime for p, _ in results} == {"tensorflow"}
            status = model.status()["litert"]
            assert status["state"] == "tensorflow"
            assert status["reason"].startswith("the interpreter failed on a batch after the "
                                               "probe passed: RuntimeError: tensorflow/lite")
            falls_back = [r for r in caplog.records if "falls back to TensorFlow" in r.message]
            assert len(falls_back) == 1 and falls_back[0].levelno == logging.WARNING
            assert model.memory_bytes() == model.size_bytes  # the LiteRT bytes are dropped
            later, _ = await function.predict(event(9, COLOUR_BODIES[2]))
            assert (later.label, later.runtime) == ("blue", "tensorflow")
            await function.close()
        finally:
            pool.close()
            await client.close()

    asyncio.run(scenario())
