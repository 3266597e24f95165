"""The pure parts of the triggers: definitions, actions, notification XML, batching,
the node's pre-commit path (a real embedded store with a test hook)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest

from gateway.errors import S3Error
from gateway.s3.notification import parse_configuration, render_configuration
from storage import api
from storage.api import InvalidArgument, annotation_tags
from storage.client import open_embedded
from triggers.actions import Prediction, evaluate
from triggers.batching import Batcher
from triggers.config import parse_definition
from triggers.functions import FunctionFailed, decode_npy


def definition(document: dict[str, object], name: str = "f"):  # type: ignore[no-untyped-def]
    return parse_definition(name, json.dumps(document).encode())


PY = {"kind": "python", "entry_point": "triggers.examples:size_class"}


# --- definitions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("document", "message"), [
    ({"kind": "onnx"}, "kind: 'onnx' is not one of tensorflow, python"),
    ({"kind": "tensorflow"}, "model: a tensorflow function needs a model"),
    ({"kind": "tensorflow", "model": "models/x.keras"}, "is not s3://BUCKET/KEY"),
    ({**PY, "entry_point": "no-colon"}, "is not package.module:callable"),
    ({**PY, "actions": [{"rout": "x"}]}, "actions[0]: needs exactly one action"),
    ({**PY, "actions": [{"route": "s/{lable}/{key}"}]}, "unknown field {lable}"),
    ({**PY, "actions": [{"when": {"score_min": 2}, "annotate": True}]},
     "actions[0].when.score_min: 2 is not a number in [0, 1]"),
    ({**PY, "actions": [{"chain": "f"}]}, "function 'f' chains to itself"),
    ({**PY, "colour": 1}, "unknown field 'colour'"),
    ({"kind": "tensorflow", "model": "s3://m/x.keras", "batching": {"max_batch_size": 0}},
     "batching.max_batch_size: 0 is not an integer in [1, 256]"),
    ({**PY, "name": "g"}, "the document names 'g', registered as 'f'"),
])
def test_definition_errors_say_what_is_wrong(document: dict[str, object], message: str) -> None:
    with pytest.raises(api.InvalidArgument) as raised:
        definition(document)
    assert message in str(raised.value)


def test_yaml_definition_round_trips_through_its_document() -> None:
    raw = b"""
kind: tensorflow
model: s3://models/shapes.keras?versionId=abc
input: {format: image, size: [8, 8], channels: 3}
labels: [circle, square]
batching: {max_batch_size: 4, max_queue_delay_ms: 1}
actions:
  - annotate: true
  - when: {label: circle, score_min: 0.5}
    route: {bucket: sorted, key: "{label}/{key}"}
  - when: {label: [square]}
    chain: {square: other}
"""
    parsed = parse_definition("shapes", raw)
    assert parsed.model is not None and parsed.model.version_id == "abc"
    again = parse_definition("shapes", json.dumps(parsed.to_document()).encode())
    assert again == parsed


def test_bad_names_and_documents() -> None:
    with pytest.raises(api.InvalidArgument, match="not a function name"):
        parse_definition("../x", b"{}")
    with pytest.raises(api.InvalidArgument, match="not valid JSON"):
        parse_definition("f", b"{nope")
    with pytest.raises(api.InvalidArgument, match="is a mapping"):
        parse_definition("f", b"- a list")


# --- actions -------------------------------------------------------------------------------


ACTIONS = {**PY, "actions": [
    {"annotate": True},
    {"when": {"label": "cat", "score_min": 0.8}, "route": "pets/{label}/{basename}"},
    {"when": {"label": "cat"}, "chain": {"cat": "breeds"}},
    {"when": {"score_max": 0.2}, "reject": ""},
    {"when": {"label": "noise"}, "discard": "noise is dropped"},
    {"annotate": False},
]}


def test_actions_apply_in_order() -> None:
    fn = definition(ACTIONS)
    cat = evaluate(fn, Prediction("cat", 0.9), "b", "in/a.jpg")
    assert (cat.key, cat.bucket, cat.chain, cat.annotate) == ("pets/cat/a.jpg", None, "breeds",
                                                              ())
    unsure = evaluate(fn, Prediction("cat", 0.1), "b", "in/a.jpg")
    assert unsure.terminal == "reject" and unsure.key is None
    assert unsure.annotate == ("metadata", "tags")
    assert "label 'cat' (score 0.1000)" in unsure.reason
    noise = evaluate(fn, Prediction("noise", 0.5), "b", "k")
    assert (noise.terminal, noise.reason) == ("discard", "noise is dropped")
    dog = evaluate(fn, Prediction("dog", 0.5), "b", "k")
    assert (dog.terminal, dog.key, dog.chain, dog.annotate) == (None, None, None, ())


@pytest.mark.parametrize(("written", "targets"), [
    (True, ("metadata", "tags")), (False, ()), ("metadata", ("metadata",)),
    ("tags", ("tags",)),
])
def test_annotate_stores_in_metadata_tags_both_or_neither(written, targets) -> None:  # type: ignore[no-untyped-def]
    fn = definition({**PY, "actions": [{"annotate": written}]})
    assert evaluate(fn, Prediction("cat", 0.9), "b", "k").annotate == targets
    # The definition reads back as it was written (squall function show).
    assert fn.to_document()["actions"] == [{"annotate": written}]


def test_annotate_refuses_other_values() -> None:
    with pytest.raises(InvalidArgument, match=r"actions\[0\]\.annotate: 'yes' is not true, "
                                              r"false, metadata or tags"):
        definition({**PY, "actions": [{"annotate": "yes"}]})


def test_annotation_tags_merge_and_keep_to_s3s_limits() -> None:
    judged = {"squall-label": "cat", "squall-score": "0.9000", "squall-function": "pets"}
    assert annotation_tags({"team": "a", "squall-label": "old"}, judged, "pets") == {
        "team": "a", **judged}
    seven = {f"t{i}": "v" for i in range(7)}
    assert len(annotation_tags(seven, judged, "pets")) == 10  # S3's bound, reached
    with pytest.raises(InvalidArgument, match="more than 10"):
        annotation_tags({**seven, "t7": "v"}, judged, "pets")
    with pytest.raises(InvalidArgument, match="longer than a tag value"):
        annotation_tags({}, {"squall-label": "x" * 257}, "pets")


# --- notification XML ---------------------------------------------------------------------


NOTIFICATION_XML = b"""<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<CloudFunctionConfiguration><Id>a</Id><CloudFunction>arn:squall:function:f</CloudFunction>
<Event>s3:ObjectCreated:Put</Event><Event>s3:ObjectCreated:Copy</Event>
<Filter><S3Key><FilterRule><Name>prefix</Name><Value>in/</Value></FilterRule>
<FilterRule><Name>Suffix</Name><Value>.png</Value></FilterRule></S3Key></Filter>
</CloudFunctionConfiguration>
<QueueConfiguration><Id>q</Id><Queue>arn:aws:sqs:r:1:q</Queue><Event>s3:ObjectRemoved:*</Event>
</QueueConfiguration></NotificationConfiguration>"""


def test_notification_xml_parses_matches_and_renders() -> None:
    configuration = parse_configuration(NOTIFICATION_XML)
    function, queue = sorted(configuration.rules, key=lambda r: r.kind)
    assert (function.prefix, function.suffix) == ("in/", ".png")
    assert function.matches("in/x.png", "s3:ObjectCreated:Put")
    assert not function.matches("in/x.png", "s3:ObjectCreated:Post")
    assert not function.matches("out/x.png", "s3:ObjectCreated:Put")
    assert queue.matches("anything", "s3:ObjectRemoved:Delete")
    assert api.NotificationConfiguration.from_json(configuration.to_json()) == configuration
    rendered = render_configuration(configuration)
    # Rendered as S3 groups them (topics, queues, functions), each rule as it was given.
    assert set(parse_configuration(rendered).rules) == set(configuration.rules)
    assert rendered.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n'
                               b'<NotificationConfiguration xmlns=')
    assert b"<QueueConfiguration><Id>q</Id><Queue>arn:aws:sqs:r:1:q</Queue>" in rendered


@pytest.mark.parametrize(("xml", "code"), [
    (b"<NotificationConfiguration><Bogus/></NotificationConfiguration>", "MalformedXML"),
    (b"<NotificationConfiguration><QueueConfiguration><Queue>q</Queue>"
     b"<Event>s3:Nope</Event></QueueConfiguration></NotificationConfiguration>",
     "InvalidArgument"),
    (b"<NotificationConfiguration><QueueConfiguration><Queue>q</Queue>"
     b"<Event>s3:ObjectCreated:*</Event><Filter><S3Key><FilterRule><Name>prefix</Name>"
     b"<Value>a</Value></FilterRule><FilterRule><Name>prefix</Name><Value>b</Value>"
     b"</FilterRule></S3Key></Filter></QueueConfiguration></NotificationConfiguration>",
     "InvalidArgument"),
])
def test_bad_notification_xml(xml: bytes, code: str) -> None:
    with pytest.raises(S3Error) as raised:
        parse_configuration(xml)
    assert raised.value.code == code


# --- npy decoding ---------------------------------------------------------------------------


def test_npy_views_the_body() -> None:
    import io

    np = pytest.importorskip("numpy")
    buffer = io.BytesIO()
    np.save(buffer, np.arange(6, dtype=np.float32).reshape(2, 3))
    body = bytearray(buffer.getvalue())
    array = decode_npy(memoryview(body))
    assert array.tolist() == [[0, 1, 2], [3, 4, 5]]
    body[-4:] = np.float32(9).tobytes()
    assert array[1, 2] == 9  # the array is a view of the body, not a copy
    with pytest.raises(FunctionFailed, match="not an .npy file"):
        decode_npy(b"hello world")


# --- batching -------------------------------------------------------------------------------


def test_batcher_batches_concurrent_requests_and_bounds_its_queue() -> None:
    sizes: list[int] = []

    async def run_batch(items: Sequence[int]) -> list[int | Exception]:
        sizes.append(len(items))
        await asyncio.sleep(0.01)
        return [ValueError("odd") if item == 13 else item * 2 for item in items]

    async def scenario() -> None:
        batcher = Batcher("t", run_batch, max_batch_size=4, max_queue_delay_ms=5,
                          queue_length_max=8)
        results = await asyncio.gather(*(batcher.submit(i) for i in range(8)),
                                       return_exceptions=True)
        assert [r[0] for r in results] == [0, 2, 4, 6, 8, 10, 12, 14]  # type: ignore[index]
        assert max(sizes) == 4 and sum(sizes) == 8
        bad = await asyncio.gather(batcher.submit(13), batcher.submit(1),
                                   return_exceptions=True)
        assert isinstance(bad[0], ValueError) and bad[1][0] == 2  # type: ignore[index]
        flood = await asyncio.gather(*(batcher.submit(i) for i in range(20)),
                                     return_exceptions=True)
        assert sum(isinstance(r, api.Overloaded) for r in flood) >= 1
        await batcher.close()
        with pytest.raises(api.Overloaded):
            await batcher.submit(1)

    asyncio.run(scenario())


# --- the node's pre-commit path ----------------------------------------------------------------


class RecordingHook:
    """A hook that judges by the body's first byte: r=reject, d=discard, m=route, else store."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def start(self, storage: api.StorageClient) -> None:
        self.storage = storage

    async def bindings(self, bucket: str, key: str, event_name: str) -> Sequence[str]:
        return ("judge",) if key.startswith("judged/") else ()

    async def judge(self, event: api.WriteEvent, functions: Sequence[str]) -> api.Verdict:
        body = b"".join(bytes(view) for view in event.body)
        assert len(body) == event.size_bytes
        self.bodies.append(body)
        action = {b"r": "reject", b"d": "discard"}.get(body[:1], "store")
        verdict = api.Verdict(function="judge", action=action, label=body[:1].decode(),
                              annotations={"squall-label": body[:1].decode()},
                              store_annotations=True,
                              key="moved/" + event.key if body[:1] == b"m" else None)
        if action == "reject":
            raise api.WriteRejected("no r", verdict)
        return verdict

    async def close(self) -> None:
        pass


async def _put(client: api.StorageClient, key: str, body: bytes) -> api.ObjectVersion:
    async with client.open_upload("b", key) as upload:
        await upload.write(body)
        return await upload.commit(api.PutSpec(etag="e"))


def test_node_judges_staged_bodies_before_commit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    hook = RecordingHook()

    async def scenario() -> None:
        client = await open_embedded(tmp_path, durable=False, pre_commit_hook=hook)
        try:
            await client.create_bucket("b", "owner")
            big = b"s" + b"x" * (api.limits.chunk_size_bytes * 2 + 10)  # staged chunks + tail
            stored = await _put(client, "judged/big", big)
            assert stored.verdict is not None and stored.user_metadata == {"squall-label": "s"}
            assert hook.bodies[-1] == big
            with pytest.raises(api.WriteRejected):
                await _put(client, "judged/r", b"r" * (api.limits.chunk_size_bytes + 1))
            with pytest.raises(api.WriteDiscarded):
                await _put(client, "judged/d", b"d")
            moved = await _put(client, "judged/m", b"m")
            assert moved.key == "moved/judged/m"
            plain = await _put(client, "plain", b"r")
            assert plain.verdict is None
            page = await client.list_objects("b")
            assert [o.key for o in page.objects] == ["judged/big", "moved/judged/m", "plain"]
            # Rejected (the hook raised) and discarded bodies were freed at once, not left
            # for the next start: only the stored objects' chunks remain (3 + 1 + 1).
            counts = client._owned_nodes[0].engine.entry_counts()
            assert (counts["staging"], counts["chunks"]) == (0, 5)
        finally:
            await client.close()

    asyncio.run(scenario())


def test_serving_without_tensorflow_functions_never_imports_it() -> None:
    import subprocess
    import sys

    code = ("import sys, squall.cli, gateway.app, storage.client, triggers.hook, "
            "triggers.examples; squall.cli.load_by_import_string('triggers.hook:TriggerHook')(); "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.split() == ["False", "False"]
