"""TensorFlow classifiers as pre-commit triggers, through the real server and boto3.

Models are tiny Keras models with hand-set weights (deterministic labels), uploaded as
objects of a 'models' bucket; the server loads them from the store. (The bucket is not
versioning-enabled here, so a model's version id is learnt from the verdicts, which
record the internal version id of the model object that judged each write.)
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from squall.launcher import ServerProcess
from tests.integration import triggers_support as support

pytest.importorskip("tensorflow")
from tests.integration import tf_models  # noqa: E402  (needs TensorFlow)

pytestmark = [pytest.mark.slow, pytest.mark.tf]

_numbers = itertools.count()


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Two inference threads whatever the machine: the concurrency test counts on them.
    yield from support.server(tmp_path_factory, "--inference-threads", "2")


@pytest.fixture(scope="module")
def s3(process: ServerProcess):  # type: ignore[no-untyped-def]
    client = support.s3_client(process.url)
    client.create_bucket(Bucket="models")
    return client


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    name = f"cams-{next(_numbers)}"
    s3.create_bucket(Bucket=name)
    return name


def upload_model(s3, key: str, body: bytes) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket="models", Key=key, Body=body)


def colours_function(model_key: str, **extra: object) -> dict[str, object]:
    return {
        "kind": "tensorflow",
        "model": f"s3://models/{model_key}",
        "input": {"format": "image", "scale": 1 / 255},
        "labels": ["red", "green", "blue"],
        "top_k": 2,
        **extra,
    }


def put_png(s3, bucket: str, key: str, colour: str):  # type: ignore[no-untyped-def]
    return s3.put_object(Bucket=bucket, Key=key, Body=tf_models.png(tf_models.COLOURS[colour]),
                         ContentType="image/png")


def test_classify_annotate_route_reject_discard(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    upload_model(s3, "colours.keras", tf_models.colour_model())
    support.register(process, "colours", colours_function("colours.keras", actions=[
        {"annotate": True},
        {"when": {"label": "red", "score_min": 0.9}, "route": "sorted/{label}/{key}"},
        {"when": {"label": "blue"}, "reject": "no blue objects here"},
        {"when": {"label": "green"}, "discard": "green is counted, not kept"},
    ]))
    support.bind(s3, bucket, "colours", prefix="in/")

    red = put_png(s3, bucket, "in/r.png", "red")
    headers = red["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-meta-squall-label"] == "red"
    model_version = headers["x-amz-meta-squall-model-version"]
    assert model_version
    step = support.verdict(red)["steps"][0]
    assert step["label"] == "red" and step["score"] > 0.99 and step["top"][0][0] == "red"
    # Where it ran (CPU:0 here; GPU:0 in the GPU suite, which runs this test too), as
    # `squall function show` says.
    shown = support.admin(process).get_function("colours")["status"]
    assert step["device"] == shown["device"]["device"] == shown["loaded_versions"][0]["device"]
    stored = s3.head_object(Bucket=bucket, Key="sorted/red/in/r.png")
    assert stored["Metadata"]["squall-label"] == "red"
    assert stored["Metadata"]["squall-function"] == "colours"
    assert stored["Metadata"]["squall-model-version"] == model_version
    assert float(stored["Metadata"]["squall-score"]) > 0.99

    with pytest.raises(ClientError) as raised:
        put_png(s3, bucket, "in/b.png", "blue")
    assert raised.value.response["Error"]["Code"] == "RejectedByFunction"
    assert raised.value.response["Error"]["Message"] == "no blue objects here"

    green = put_png(s3, bucket, "in/g.png", "green")
    assert support.verdict(green)["action"] == "discard"
    assert green["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-squall-label"] == "green"
    assert support.keys(s3, bucket) == ["sorted/red/in/r.png"]

    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="in/junk.png", Body=b"not an image")
    assert "could not judge" in raised.value.response["Error"]["Message"]


def test_npy_tensors_and_labels_object(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    upload_model(s3, "vector.keras", tf_models.vector_model())
    s3.put_object(Bucket="models", Key="vector.labels", Body=b"negative\npositive\n")
    support.register(process, "vector", {
        "kind": "tensorflow", "model": "s3://models/vector.keras",
        "input": {"format": "npy", "scale": 1.0}, "labels": "s3://models/vector.labels",
    })
    support.bind(s3, bucket, "vector")
    up = s3.put_object(Bucket=bucket, Key="v1.npy", Body=tf_models.npy([1, 2, 3, 4]))
    down = s3.put_object(Bucket=bucket, Key="v2.npy", Body=tf_models.npy([-1, -2, 0, 0]))
    assert support.verdict(up)["steps"][0]["label"] == "positive"
    assert support.verdict(down)["steps"][0]["label"] == "negative"
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="v3.npy", Body=tf_models.npy([1, 2, 3]))
    assert "does not fit the model's input (4,)" in raised.value.response["Error"]["Message"]


def test_chain_from_a_classifier_to_a_python_function(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    upload_model(s3, "chain.keras", tf_models.colour_model())
    support.register(process, "sizer", {"kind": "python",
                                        "entry_point": "triggers.examples:size_class"})
    support.register(process, "chooser", colours_function("chain.keras", actions=[
        {"annotate": True}, {"chain": {"red": "sizer"}}]))
    support.bind(s3, bucket, "chooser")
    red = support.verdict(put_png(s3, bucket, "r.png", "red"))
    assert [s["function"] for s in red["steps"]] == ["chooser", "sizer"]
    blue = support.verdict(put_png(s3, bucket, "b.png", "blue"))
    assert [s["function"] for s in blue["steps"]] == ["chooser"]


def test_model_update_mid_stream_switches_atomically(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    """v1 labels a red image 'red', v2 labels it 'blue'. While PUTs stream, v2 is
    uploaded: every PUT is judged wholly by one version (each version it records always
    goes with one label), both versions are seen, and PUTs after the upload all use v2."""
    upload_model(s3, "switch.keras", tf_models.colour_model((0, 1, 2)))
    support.register(process, "switch", colours_function("switch.keras", batching={
        "max_batch_size": 4, "max_queue_delay_ms": 1}))
    support.bind(s3, bucket, "switch")
    seen: list[tuple[str, str]] = []
    stop = threading.Event()

    def stream(worker: int) -> None:
        client = support.s3_client(process.url)
        for n in itertools.count():
            if stop.is_set():
                return
            response = put_png(s3=client, bucket=bucket, key=f"w{worker}/{n}.png", colour="red")
            step = support.verdict(response)["steps"][0]
            seen.append((step["model_version"], step["label"]))

    with ThreadPoolExecutor(3) as pool:
        workers = [pool.submit(stream, w) for w in range(3)]
        while len(seen) < 6:
            threading.Event().wait(0.05)
        upload_model(s3, "switch.keras", tf_models.colour_model((2, 1, 0)))
        count_at_switch = len(seen)
        while len(seen) < count_at_switch + 9:
            threading.Event().wait(0.05)
        stop.set()
        for worker in workers:
            worker.result()
    labels_by_version: dict[str, set[str]] = {}
    for version, label in seen:
        labels_by_version.setdefault(version, set()).add(label)
    assert sorted(labels_by_version.values(), key=sorted) == [{"blue"}, {"red"}]
    (v2,) = [v for v, labels in labels_by_version.items() if labels == {"blue"}]
    assert seen[0][1] == "red" and seen[-1] == (v2, "blue")
    first_blue = next(i for i, (_, label) in enumerate(seen) if label == "blue")
    # Once v2 judged a write, no later-finishing write went back to v1 (3 workers: a
    # write already judged by v1 may still be recorded after, one per worker at most).
    assert sum(1 for _, label in seen[first_blue:] if label == "red") <= 3
    after = support.verdict(put_png(s3, bucket, "after.png", "red"))["steps"][0]
    assert (after["model_version"], after["label"]) == (v2, "blue")


def test_replaced_definitions_are_retired_and_closed_while_writes_run(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    """The definition is replaced UPDATES times while three clients write: no write
    fails, the registry never holds more than ``limits.trigger_retired_functions_max``
    retired versions still draining, and every replaced version is closed in the end
    (one write after each update makes sure that version was built and used)."""
    from storage.limits import trigger_retired_functions_max

    updates = 2 * trigger_retired_functions_max + 4
    upload_model(s3, "churn.keras", tf_models.colour_model())
    batching = {"max_batch_size": 4, "max_queue_delay_ms": 20}  # requests wait in queues
    support.register(process, "churn", colours_function("churn.keras", batching=batching))
    support.bind(s3, bucket, "churn")
    assert support.verdict(put_png(s3, bucket, "first.png", "red"))["steps"][0]["label"] == "red"
    before = support.admin(process).get_function("churn")["registry"]
    stop = threading.Event()
    written: list[str] = []

    def stream(worker: int) -> None:
        client = support.s3_client(process.url, retries=1)  # one attempt: a failure is not retried
        for n in itertools.count():
            if stop.is_set():
                return
            colour = ("red", "green", "blue")[n % 3]
            step = support.verdict(put_png(client, bucket, f"w{worker}/{n}.png",
                                           colour))["steps"][0]
            assert step["label"] == colour
            written.append(step["label"])

    observed = []
    with ThreadPoolExecutor(3) as pool:
        workers = [pool.submit(stream, w) for w in range(3)]
        for update in range(updates):
            delay_ms = 20 + update % 2  # each update is a new definition version anyway
            support.register(process, "churn", colours_function(
                "churn.keras", batching={**batching, "max_queue_delay_ms": delay_ms}))
            assert support.verdict(put_png(s3, bucket, f"u{update}.png", "blue"))[
                "steps"][0]["label"] == "blue"
            observed.append(support.admin(process).get_function("churn")["registry"])
        stop.set()
        for worker in workers:
            worker.result()  # a write that failed raises here
    assert len(written) >= updates  # the writers ran alongside the updates
    assert all(counts["retiring"] <= trigger_retired_functions_max for counts in observed)
    assert all(counts["running"] == before["running"] for counts in observed)
    deadline_s = time.monotonic() + 10
    while True:  # the last retired versions close once their batches end
        counts = support.admin(process).get_function("churn")["registry"]
        if counts["retiring"] == 0 or time.monotonic() > deadline_s:
            break
        time.sleep(0.05)
    assert counts["retiring"] == 0
    assert counts["retired_closed"] - before["retired_closed"] == updates


def test_the_next_write_after_a_model_put_uses_it(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    """The model's version is cached between writes (against the models bucket's change
    counter): each PUT right after a model upload was acknowledged is judged by it."""
    upload_model(s3, "flip.keras", tf_models.colour_model((0, 1, 2)))
    support.register(process, "flip", {**colours_function("flip.keras"), "top_k": 1})
    support.bind(s3, bucket, "flip")
    models = {(0, 1, 2): tf_models.colour_model((0, 1, 2)),
              (2, 1, 0): tf_models.colour_model((2, 1, 0))}
    versions = set()
    for n in range(6):
        permutation = (0, 1, 2) if n % 2 == 0 else (2, 1, 0)
        upload_model(s3, "flip.keras", models[permutation])
        for m in range(2):  # the first write after the upload, and one more
            step = support.verdict(put_png(s3, bucket, f"f{n}-{m}.png", "red"))["steps"][0]
            assert step["label"] == ("red" if permutation == (0, 1, 2) else "blue"), (n, m)
            versions.add(step["model_version"])
    assert len(versions) == 6  # every upload was a new version, each one used


def test_batches_of_one_function_overlap(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    """Under 16 concurrent clients, a function with max_concurrent_batches 2 has two
    batches running at once (its stats say so), one with 1 never more than one."""
    upload_model(s3, "slow.keras", tf_models.slow_model())
    for name, concurrent in (("wide", 2), ("narrow", 1)):
        support.register(process, name, {
            "kind": "tensorflow", "model": "s3://models/slow.keras",
            "input": {"format": "npy", "scale": 1.0}, "labels": ["a", "b"],
            "batching": {"max_batch_size": 1, "max_queue_delay_ms": 0,
                         "max_concurrent_batches": concurrent}})
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [
            {"Id": name, "LambdaFunctionArn": support.FUNCTION_ARN.format(name),
             "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": f"{name}/"}]}}}
            for name in ("wide", "narrow")]})
    import numpy as np

    body = tf_models.npy(np.random.default_rng(3).random((64, 64, 3)))
    for name in ("wide", "narrow"):  # loads the model, traces the graph
        s3.put_object(Bucket=bucket, Key=f"{name}/warm.npy", Body=body)

    def put(key: str) -> str:
        label: str = support.verdict(s3.put_object(Bucket=bucket, Key=key, Body=body))[
            "steps"][0]["label"]
        return label

    with ThreadPoolExecutor(16) as pool:
        labels = list(pool.map(put, [f"{name}/{n}.npy" for n in range(48)
                                     for name in ("wide", "narrow")]))
    assert set(labels) <= {"a", "b"}
    stats = {name: support.admin(process).get_function(name)["stats"]
             for name in ("wide", "narrow")}
    assert stats["wide"]["running_batches_max"] == 2, stats
    assert stats["narrow"]["running_batches_max"] == 1, stats
    assert stats["wide"]["requests"] == stats["narrow"]["requests"] == 49


def test_pinned_model_version(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    """A pinned version keeps judging after the model is overwritten (needs a
    versioning-enabled models bucket); in an unversioned bucket the overwrite removes
    the pinned version and writes say so."""
    try:
        s3.create_bucket(Bucket="models-versioned")
        s3.put_bucket_versioning(Bucket="models-versioned",
                                 VersioningConfiguration={"Status": "Enabled"})
        models_bucket = "models-versioned"
    except ClientError as error:
        assert error.response["Error"]["Code"] == "NotImplemented"
        models_bucket = "models"
    s3.put_object(Bucket=models_bucket, Key="pinned.keras", Body=tf_models.colour_model())
    function = colours_function("pinned.keras")
    function["model"] = f"s3://{models_bucket}/pinned.keras"
    support.register(process, "latest", function)
    support.bind(s3, bucket, "latest")
    v1 = support.verdict(put_png(s3, bucket, "first.png", "red"))["steps"][0]["model_version"]
    support.register(process, "pinned", {**function, "model": f"{function['model']}"
                                                              f"?versionId={v1}"})
    support.bind(s3, bucket, "pinned")
    s3.put_object(Bucket=models_bucket, Key="pinned.keras",
                  Body=tf_models.colour_model((2, 1, 0)))
    if models_bucket == "models":
        with pytest.raises(ClientError) as raised:
            put_png(s3, bucket, "r.png", "red")
        assert f"pinned.keras?versionId={v1} does not exist" in raised.value.response[
            "Error"]["Message"]
        return
    step = support.verdict(put_png(s3, bucket, "r.png", "red"))["steps"][0]
    assert (step["model_version"], step["label"]) == (v1, "red")


def test_batching_under_concurrency(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    upload_model(s3, "batch.keras", tf_models.colour_model())
    support.register(process, "batched", colours_function("batch.keras", batching={
        "max_batch_size": 8, "max_queue_delay_ms": 50}))
    support.bind(s3, bucket, "batched")
    put_png(s3, bucket, "warm.png", "red")  # loads the model
    before = support.metric_samples(support.admin(process).metrics())

    def put(n: int) -> dict[str, Any]:
        colour = ("red", "green", "blue")[n % 3]
        step = support.verdict(put_png(s3, bucket, f"c/{n}.png", colour))["steps"][0]
        assert step["label"] == colour
        return step

    with ThreadPoolExecutor(16) as pool:
        steps = list(pool.map(put, range(32)))
    sizes = [int(step.get("batch_size", 1)) for step in steps]
    assert max(sizes) > 1, sizes
    assert max(sizes) <= 8
    # Each verdict says how long its batch's inference took, and the metrics count one
    # queue wait per write and one inference time per batch.
    assert all(step["inference_ms"] > 0 for step in steps)
    after = support.metric_samples(support.admin(process).metrics())

    def grew(name: str) -> float:
        key = (name, (("function", "batched"),))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("squall_trigger_queue_wait_seconds_count") == 32
    assert grew("squall_trigger_queue_wait_seconds_sum") > 0  # batches waited for company
    batches = grew("squall_trigger_batches_total")
    assert grew("squall_trigger_inference_seconds_count") == batches < 32
    assert grew("squall_trigger_inference_seconds_sum") * 1000 >= max(
        step["inference_ms"] for step in steps)


def test_full_queue_is_slow_down(process, bucket) -> None:  # type: ignore[no-untyped-def]
    s3 = support.s3_client(process.url, retries=1)
    upload_model(s3, "tight.keras", tf_models.colour_model())
    support.register(process, "tight", colours_function("tight.keras", batching={
        "max_batch_size": 1, "max_queue_delay_ms": 0, "queue_length_max": 1}))
    support.bind(s3, bucket, "tight")
    put_png(s3, bucket, "warm.png", "red")

    def put(n: int) -> str:
        try:
            put_png(s3, bucket, f"q/{n}.png", "red")
            return "ok"
        except ClientError as error:
            assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            return str(error.response["Error"]["Code"])

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(put, range(48)))
    assert "ok" in outcomes
    assert "SlowDown" in outcomes, outcomes


def test_registration_checks_the_model_exists(process) -> None:  # type: ignore[no-untyped-def]
    from squall.admin_client import AdminError

    with pytest.raises(AdminError) as raised:
        support.register(process, "ghost", colours_function("ghost.keras"))
    assert "s3://models/ghost.keras does not exist" in raised.value.body
    body = json.dumps(colours_function("x.keras", top_k=0)).encode()
    with pytest.raises(AdminError) as raised:
        support.admin(process).put_function("bad", body)
    assert "top_k: 0 is not an integer in [1, 100]" in raised.value.body


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_saved_model_archive_judges_like_the_keras_model(process, s3, bucket, kind) -> None:  # type: ignore[no-untyped-def]
    """The same weights as a .keras file and as a SavedModel archive (named without any
    hint of its format): every verdict and stored annotation agrees, score included."""
    keras_bytes = tf_models.colour_model()
    upload_model(s3, f"same-{kind}.keras", keras_bytes)
    upload_model(s3, f"same-{kind}.model", tf_models.saved_model_archive(keras_bytes, kind))
    support.register(process, f"k-{kind}", colours_function(f"same-{kind}.keras"))
    support.register(process, f"s-{kind}", colours_function(f"same-{kind}.model"))
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [
            {"Id": name, "LambdaFunctionArn": f"arn:squall:function:{name}",
             "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}}
            for name, prefix in ((f"k-{kind}", "k/"), (f"s-{kind}", "s/"))]})
    for colour in tf_models.COLOURS:
        keras_step = support.verdict(put_png(s3, bucket, f"k/{colour}.png", colour))["steps"][0]
        saved_step = support.verdict(put_png(s3, bucket, f"s/{colour}.png", colour))["steps"][0]
        assert saved_step["label"] == keras_step["label"] == colour
        assert saved_step["score"] == keras_step["score"] and saved_step["top"] == keras_step["top"]
        assert saved_step["runtime"] == "tensorflow"
        keras_meta = s3.head_object(Bucket=bucket, Key=f"k/{colour}.png")["Metadata"]
        saved_meta = s3.head_object(Bucket=bucket, Key=f"s/{colour}.png")["Metadata"]
        assert saved_meta["squall-label"] == keras_meta["squall-label"] == colour
        assert saved_meta["squall-score"] == keras_meta["squall-score"]
    shown = support.admin(process).get_function(f"s-{kind}")
    (loaded,) = shown["status"]["loaded_versions"]
    assert loaded["format"] == "saved_model" and loaded["input_shape"] == [8, 8, 3]


def test_a_hostile_archive_is_a_clear_error(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        link = tarfile.TarInfo("model/saved_model.pb")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    upload_model(s3, "hostile.tgz", buffer.getvalue())
    support.register(process, "hostile", colours_function("hostile.tgz"))
    support.bind(s3, bucket, "hostile")
    with pytest.raises(ClientError) as raised:
        put_png(s3, bucket, "r.png", "red")
    error = raised.value.response
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "is not a usable SavedModel archive: member 'model/saved_model.pb': links" in error[
        "Error"]["Message"]
    assert support.keys(s3, bucket) == []


def litert_state(process: Any, function: str, until: tuple[str, ...],
                 timeout_s: float = 300.0) -> str:
    """Poll the function's status until its model's LiteRT state is one of ``until``."""
    deadline = time.monotonic() + timeout_s
    while True:
        versions = support.admin(process).get_function(function)["status"]["loaded_versions"]
        states = [v["litert"]["state"] for v in versions if "litert" in v]
        if states and states[0] in until:
            return str(states[0])
        assert time.monotonic() < deadline, f"{function}: LiteRT state still {states}"
        time.sleep(0.2)


def test_litert_runtime_labels_like_tensorflow_and_falls_back_visibly(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed")
    upload_model(s3, "lite.keras", tf_models.colour_model())
    upload_model(s3, "igamma.tgz", tf_models.unconvertible_archive())
    support.register(process, "lite", colours_function("lite.keras", runtime="litert",
                                                       litert_threads=1))
    support.register(process, "heavy", colours_function("lite.keras"))
    support.register(process, "igamma", {
        "kind": "tensorflow", "model": "s3://models/igamma.tgz", "runtime": "litert",
        "input": {"format": "npy", "scale": 1.0}, "labels": ["a", "b"]})
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [
            {"Id": name, "LambdaFunctionArn": f"arn:squall:function:{name}",
             "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": f"{name}/"}]}}}
            for name in ("lite", "heavy", "igamma")]})
    # The first judged write starts the conversion in the background and is judged by
    # TensorFlow, as is every write until LiteRT is converted and verified.
    first = support.verdict(put_png(s3, bucket, "lite/first.png", "red"))["steps"][0]
    assert (first["label"], first["runtime"]) == ("red", "tensorflow")
    litert_state(process, "lite", until=("litert", "tensorflow"))
    for colour in tf_models.COLOURS:
        lite = support.verdict(put_png(s3, bucket, f"lite/{colour}.png", colour))["steps"][0]
        heavy = support.verdict(put_png(s3, bucket, f"heavy/{colour}.png", colour))["steps"][0]
        assert lite["label"] == heavy["label"] == colour
        assert abs(lite["score"] - heavy["score"]) <= 1e-3
        assert (lite["runtime"], heavy["runtime"]) == ("litert", "tensorflow")
    status = support.admin(process).get_function("lite")["status"]
    assert status["runtime"] == "litert"
    (loaded,) = status["loaded_versions"]
    assert loaded["runtime"] == "litert" and loaded["litert"]["state"] == "litert"
    assert loaded["litert"]["interpreters"] == {"1": 1}

    step = support.verdict(s3.put_object(Bucket=bucket, Key="igamma/v.npy",
                                         Body=tf_models.npy([1, 2, 3, 4])))["steps"][0]
    assert step["runtime"] == "tensorflow" and step["label"] in ("a", "b")
    assert litert_state(process, "igamma", until=("litert", "tensorflow")) == "tensorflow"
    (loaded,) = support.admin(process).get_function("igamma")["status"]["loaded_versions"]
    assert loaded["runtime"] == "tensorflow" and loaded["litert"]["state"] == "tensorflow"
    assert "the converter refused it" in loaded["litert"]["reason"]
    assert "Igamma" in loaded["litert"]["reason"]


def test_registration_refuses_an_unknown_runtime(process, s3) -> None:  # type: ignore[no-untyped-def]
    from squall.admin_client import AdminError

    upload_model(s3, "rt.keras", tf_models.colour_model())
    with pytest.raises(AdminError) as raised:
        support.register(process, "rt", colours_function("rt.keras", runtime="tflite"))
    assert "runtime: 'tflite' is not one of tensorflow, litert" in raised.value.body
    assert raised.value.status == 400
    with pytest.raises(AdminError) as raised:
        support.register(process, "rt", colours_function("rt.keras", litert_threads=4))
    assert "litert_threads: applies only with runtime: litert" in raised.value.body
    with pytest.raises(AdminError) as raised:
        support.register(process, "rt", colours_function("rt.keras", runtime="litert",
                                                         litert_threads=0))
    assert f"litert_threads: 0 is not an integer in [1, {16}]" in raised.value.body


def test_gpu_requested_on_a_host_without_one(tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """``squall serve --tensorflow-device gpu`` where TensorFlow lists no GPU: the server
    stores objects, a judged PUT is 403 RejectedByFunction with the reason (never a
    503), and ``squall function show`` says why (docs/triggers.md, "GPU")."""
    import tensorflow as tf

    from triggers.devices import NO_GPU_REASON

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("TensorFlow lists a GPU here: the refusal needs a host without one")
    for server in support.server(tmp_path_factory, "--tensorflow-device", "gpu"):
        s3 = support.s3_client(server.url, retries=1)
        s3.create_bucket(Bucket="models")
        s3.create_bucket(Bucket="judged")
        upload_model(s3, "colours.keras", tf_models.colour_model())
        support.register(server, "colours", colours_function("colours.keras"))
        support.bind(s3, "judged", "colours")
        with pytest.raises(ClientError) as raised:
            put_png(s3, "judged", "r.png", "red")
        error = raised.value.response
        assert (error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]) == (
            403, "RejectedByFunction")
        assert NO_GPU_REASON in error["Error"]["Message"]
        s3.put_object(Bucket="models", Key="plain.txt", Body=b"stored as ever")
        shown = support.squall_cli(server, "show", "colours")
        assert shown.returncode == 0, shown.stderr
        device = json.loads(shown.stdout)["status"]["device"]
        assert device["requested"] == "gpu" and NO_GPU_REASON in device["error"]
