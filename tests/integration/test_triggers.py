"""Pre-commit functions through the real gateway, without TensorFlow: python functions,
notification binding (boto3 round trip), the admin API and the ``squall function`` CLI."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from squall.launcher import ServerProcess
from tests.integration import triggers_support as support

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # A webhook target that notification configurations may name (nothing listens: the
    # round-trip test below makes no event).
    yield from support.server(tmp_path_factory, "--webhook", "audit=http://127.0.0.1:9/")


@pytest.fixture(scope="module")
def s3(process: ServerProcess):  # type: ignore[no-untyped-def]
    return support.s3_client(process.url)


_bucket_numbers = itertools.count()


@pytest.fixture
def bucket(s3, request: pytest.FixtureRequest) -> str:  # type: ignore[no-untyped-def]

    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.replace("_", "-").lower())[:40]
    name = f"t-{base}-{next(_bucket_numbers)}"
    s3.create_bucket(Bucket=name)
    return name


SIZES = {
    "kind": "python",
    "entry_point": "triggers.examples:size_class",
    "actions": [
        {"annotate": True},
        {"when": {"label": "empty"}, "reject": "empty objects are refused"},
        {"when": {"label": "large"}, "route": "big/{key}"},
    ],
}


def tag_dict(s3, bucket: str, key: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


def test_python_function_annotates_routes_and_rejects(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    support.register(process, "sizes", SIZES)
    support.bind(s3, bucket, "sizes", prefix="in/")
    small = s3.put_object(Bucket=bucket, Key="in/a.txt", Body=b"hello")
    headers = small["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-meta-squall-label"] == "small"
    assert support.verdict(small)["action"] == "store"
    judged = {"squall-label": "small", "squall-score": "1.0000", "squall-function": "sizes"}
    assert s3.head_object(Bucket=bucket, Key="in/a.txt")["Metadata"] == judged
    # ... and as object tags, in the same version.
    assert tag_dict(s3, bucket, "in/a.txt") == judged

    large = s3.put_object(Bucket=bucket, Key="in/b.bin", Body=b"x" * 5000)
    assert support.verdict(large)["key"] == "big/in/b.bin"
    assert s3.get_object(Bucket=bucket, Key="big/in/b.bin")["Body"].read() == b"x" * 5000

    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="in/empty", Body=b"")
    error = raised.value.response
    assert error["Error"]["Code"] == "RejectedByFunction"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "empty objects are refused" in error["Error"]["Message"]
    assert json.loads(error["ResponseMetadata"]["HTTPHeaders"]["x-squall-verdict"])[
        "action"] == "reject"

    # Outside the prefix filter nothing judges the write.
    plain = s3.put_object(Bucket=bucket, Key="other/empty", Body=b"")
    assert "x-squall-verdict" not in plain["ResponseMetadata"]["HTTPHeaders"]
    assert sorted(support.keys(s3, bucket)) == ["big/in/b.bin", "in/a.txt", "other/empty"]


def test_discard_answers_and_stores_nothing(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    support.register(process, "magic", {
        "kind": "python", "entry_point": "triggers.examples:has_magic",
        "actions": [{"when": {"label": "other"}, "discard": "counted, not kept"}],
    })
    support.bind(s3, bucket, "magic")
    response = s3.put_object(Bucket=bucket, Key="note.txt", Body=b"just text")
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert support.verdict(response)["action"] == "discard"
    assert response["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-squall-label"] == "other"
    assert support.keys(s3, bucket) == []
    kept = s3.put_object(Bucket=bucket, Key="p.png", Body=b"\x89PNG\r\n\x1a\n...")
    assert support.verdict(kept)["action"] == "store"
    assert support.keys(s3, bucket) == ["p.png"]


def test_chain_selects_the_next_function_by_label(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    support.register(process, "sizes2", {**SIZES, "actions": [{"annotate": True}]})
    support.register(process, "router", {
        "kind": "python", "entry_point": "triggers.examples:has_magic",
        "actions": [{"annotate": True}, {"chain": {"other": "sizes2"}}],
    })
    support.bind(s3, bucket, "router")
    response = s3.put_object(Bucket=bucket, Key="x", Body=b"abc")
    steps = support.verdict(response)["steps"]
    assert [(s["function"], s["label"]) for s in steps] == [("router", "other"),
                                                           ("sizes2", "small")]
    assert s3.head_object(Bucket=bucket, Key="x")["Metadata"]["squall-function"] == "sizes2"
    png = s3.put_object(Bucket=bucket, Key="y", Body=b"\x89PNG\r\n\x1a\n")
    assert [s["function"] for s in support.verdict(png)["steps"]] == ["router"]


def test_copy_is_judged_as_object_created_copy(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    s3.put_object(Bucket=bucket, Key="src", Body=b"")
    support.register(process, "sizes", SIZES)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [{
            "Id": "copies", "LambdaFunctionArn": "arn:squall:function:sizes",
            "Events": ["s3:ObjectCreated:Copy"]}]})
    s3.put_object(Bucket=bucket, Key="plain", Body=b"")  # a Put: not bound
    with pytest.raises(ClientError) as raised:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert raised.value.response["Error"]["Code"] == "RejectedByFunction"
    assert sorted(support.keys(s3, bucket)) == ["plain", "src"]


def test_notification_configuration_round_trips(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    support.register(process, "sizes", SIZES)
    configuration = {
        "TopicConfigurations": [{
            "Id": "topic-1", "TopicArn": "arn:squall:sns::audit:webhook",
            "Events": ["s3:ObjectRemoved:*"]}],
        "QueueConfigurations": [{
            "Id": "queue-1", "QueueArn": "arn:squall:sqs::audit:webhook",
            "Events": ["s3:ObjectCreated:Put", "s3:ObjectCreated:Copy"],
            "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": ".jpg"}]}}}],
        "LambdaFunctionConfigurations": [{
            "Id": "fn-1", "LambdaFunctionArn": "arn:squall:function:sizes",
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "cam/"},
                                               {"Name": "suffix", "Value": ".png"}]}}}],
    }
    assert s3.get_bucket_notification_configuration(Bucket=bucket).keys() == {
        "ResponseMetadata"}
    s3.put_bucket_notification_configuration(Bucket=bucket,
                                             NotificationConfiguration=configuration)
    got = s3.get_bucket_notification_configuration(Bucket=bucket)
    got.pop("ResponseMetadata")
    assert got == configuration
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    assert s3.get_bucket_notification_configuration(Bucket=bucket).keys() == {
        "ResponseMetadata"}


def test_aws_cli_binds_a_function(process, s3, bucket, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``aws s3api put-bucket-notification-configuration`` binds a function as boto3 does:
    the aws cli's writes are judged, the configuration reads back the same through the
    cli, and an unknown function is refused with the message the cli shows."""
    support.register(process, "sizes", SIZES)
    configuration = {"LambdaFunctionConfigurations": [{
        "Id": "cli-bind", "LambdaFunctionArn": "arn:squall:function:sizes",
        "Events": ["s3:ObjectCreated:Put"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "cli/"}]}}}]}
    (tmp_path / "binding.json").write_text(json.dumps(configuration))
    bound = support.aws_cli(process, tmp_path, "s3api", "put-bucket-notification-configuration",
                            "--bucket", bucket, "--notification-configuration",
                            "file://binding.json")
    assert bound.returncode == 0, bound.stderr
    shown = support.aws_cli(process, tmp_path, "s3api", "get-bucket-notification-configuration",
                            "--bucket", bucket)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == configuration

    (tmp_path / "large.bin").write_bytes(b"y" * 4000)
    put = support.aws_cli(process, tmp_path, "s3api", "put-object", "--bucket", bucket,
                          "--key", "cli/large.bin", "--body", "large.bin")
    assert put.returncode == 0, put.stderr
    assert support.keys(s3, bucket) == ["big/cli/large.bin"]  # routed by the verdict
    assert s3.head_object(Bucket=bucket, Key="big/cli/large.bin")["Metadata"][
        "squall-label"] == "large"
    (tmp_path / "empty.bin").write_bytes(b"")
    refused = support.aws_cli(process, tmp_path, "s3api", "put-object", "--bucket", bucket,
                              "--key", "cli/empty.bin", "--body", "empty.bin")
    assert refused.returncode != 0
    assert "RejectedByFunction" in refused.stderr
    assert "empty objects are refused" in refused.stderr

    configuration["LambdaFunctionConfigurations"][0]["LambdaFunctionArn"] = (
        "arn:squall:function:no-such-fn")
    (tmp_path / "binding.json").write_text(json.dumps(configuration))
    unknown = support.aws_cli(process, tmp_path, "s3api",
                              "put-bucket-notification-configuration", "--bucket", bucket,
                              "--notification-configuration", "file://binding.json")
    assert unknown.returncode != 0
    assert "InvalidArgument" in unknown.stderr and "'no-such-fn' is not registered" in (
        unknown.stderr)


@pytest.mark.parametrize(("configuration", "message"), [
    ({"LambdaFunctionArn": "arn:squall:function:no-such-fn",
      "Events": ["s3:ObjectCreated:*"]}, "'no-such-fn' is not registered"),
    ({"LambdaFunctionArn": "arn:aws:lambda:us-east-1:1:function:f",
      "Events": ["s3:ObjectCreated:*"]}, "arn:squall:function:NAME"),
    ({"LambdaFunctionArn": "arn:squall:function:sizes",
      "Events": ["s3:ObjectRemoved:*"]}, "only s3:ObjectCreated"),
])
def test_bad_binding_is_invalid_argument(process, s3, bucket, configuration, message) -> None:  # type: ignore[no-untyped-def]
    support.register(process, "sizes", SIZES)
    with pytest.raises(ClientError) as raised:
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={"LambdaFunctionConfigurations": [configuration]})
    assert raised.value.response["Error"]["Code"] == "InvalidArgument"
    assert message in raised.value.response["Error"]["Message"]


def test_removed_function_fails_closed(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    support.register(process, "doomed", SIZES)
    support.bind(s3, bucket, "doomed")
    support.admin(process).delete_function("doomed")
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert "'doomed' is bound to bucket" in raised.value.response["Error"]["Message"]
    assert support.keys(s3, bucket) == []


def _judged_by(response: dict[str, object]) -> tuple[str, str] | None:
    """(function, label) of the last step, None for a write no function judged."""
    headers = response["ResponseMetadata"]["HTTPHeaders"]  # type: ignore[index]
    if "x-squall-verdict" not in headers:
        return None
    step = support.verdict(response)["steps"][-1]  # type: ignore[arg-type]
    return step["function"], step["label"]


def test_the_next_write_obeys_a_notification_change(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    """The bucket's parsed notification configuration is cached between writes; each
    PUT right after a configuration change was acknowledged follows the new one."""
    support.register(process, "sizes", {"kind": "python",
                                        "entry_point": "triggers.examples:size_class"})
    support.register(process, "bytes", {"kind": "python",
                                        "entry_point": "triggers.examples:first_byte"})
    for n in range(3):
        support.bind(s3, bucket, "sizes")
        assert _judged_by(s3.put_object(Bucket=bucket, Key=f"{n}a", Body=b"x")) == (
            "sizes", "small")
        support.bind(s3, bucket, "bytes")
        assert _judged_by(s3.put_object(Bucket=bucket, Key=f"{n}b", Body=b"x")) == (
            "bytes", "byte-78")
        support.bind(s3, bucket, "bytes", prefix="only/")
        assert _judged_by(s3.put_object(Bucket=bucket, Key=f"{n}c", Body=b"x")) is None
        s3.put_bucket_notification_configuration(Bucket=bucket,
                                                 NotificationConfiguration={})
        assert _judged_by(s3.put_object(Bucket=bucket, Key=f"only/{n}", Body=b"x")) is None


def test_the_next_write_uses_a_new_function_definition(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    """The running function is cached between writes; each PUT right after a definition
    update was acknowledged runs the new definition, and after a delete fails closed."""
    for n in range(3):
        support.register(process, "changing", {
            "kind": "python", "entry_point": "triggers.examples:size_class"})
        if n == 0:
            support.bind(s3, bucket, "changing")  # a bound function must be registered
        assert _judged_by(s3.put_object(Bucket=bucket, Key=f"{n}a", Body=b"x")) == (
            "changing", "small")
        support.register(process, "changing", {
            "kind": "python", "entry_point": "triggers.examples:first_byte"})
        assert _judged_by(s3.put_object(Bucket=bucket, Key=f"{n}b", Body=b"x")) == (
            "changing", "byte-78")
    support.admin(process).delete_function("changing")
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="gone", Body=b"x")
    assert "'changing' is bound to bucket" in raised.value.response["Error"]["Message"]


def test_function_cli(process: ServerProcess, tmp_path: Path) -> None:
    good = tmp_path / "sizes.yaml"
    good.write_text("kind: python\nentry_point: triggers.examples:size_class\n"
                    "actions:\n  - annotate: true\n")
    put = support.squall_cli(process, "put", "cli-sizes", str(good))
    assert put.returncode == 0, put.stderr
    assert put.stdout.startswith("registered cli-sizes (version ")
    listed = support.squall_cli(process, "ls")
    assert "cli-sizes\tpython\ttriggers.examples:size_class" in listed.stdout
    shown = json.loads(support.squall_cli(process, "show", "cli-sizes").stdout)
    assert shown["entry_point"] == "triggers.examples:size_class"

    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: python\nentry_point: triggers.examples:size_class\n"
                   "actions:\n  - rout: 'x/{key}'\n")
    failed = support.squall_cli(process, "put", "cli-bad", str(bad))
    assert failed.returncode == 1
    assert "actions[0]: needs exactly one action" in failed.stderr
    missing = support.squall_cli(process, "put", "cli-bad", str(bad).replace("bad", "nope"))
    assert missing.returncode == 1

    assert support.squall_cli(process, "rm", "cli-sizes").returncode == 0
    gone = support.squall_cli(process, "show", "cli-sizes")
    assert gone.returncode == 1 and "No function named 'cli-sizes'" in gone.stderr


def test_python_entry_point_is_imported_at_registration(process: ServerProcess) -> None:
    from squall.admin_client import AdminError

    with pytest.raises(AdminError) as raised:
        support.register(process, "broken", {"kind": "python",
                                             "entry_point": "triggers.examples:nope"})
    assert raised.value.status == 400
    assert "cannot import 'triggers.examples:nope'" in raised.value.body


FIRST_BYTE = {
    "kind": "python",
    "entry_point": "triggers.examples:first_byte",
    "actions": [
        {"annotate": True},
        {"when": {"label": "byte-00"}, "reject": "zero-led uploads are refused"},
        {"when": {"label": "byte-01"}, "route": "routed/{key}"},
        {"when": {"label": "byte-02"}, "discard": "seen, not kept"},
    ],
}


def _multipart(s3, bucket: str, key: str, first: int) -> dict:  # type: ignore[no-untyped-def]
    """A two-part upload whose body starts with byte ``first``; returns Complete's answer."""
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    bodies = [bytes([first]) * (5 * 1024 * 1024), b"tail"]
    parts = [
        {"PartNumber": number, "ETag": s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)["ETag"]}
        for number, body in enumerate(bodies, start=1)
    ]
    return s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                        MultipartUpload={"Parts": parts})


def test_complete_multipart_upload_is_judged_before_it_commits(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    """A multipart upload cannot slip past a function: Complete is judged on the parts."""
    support.register(process, "first-byte", FIRST_BYTE)
    support.bind(s3, bucket, "first-byte", prefix="mp/")

    stored = _multipart(s3, bucket, "mp/a", 0x41)
    assert support.verdict(stored)["action"] == "store"
    assert stored["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-squall-label"] == "byte-41"
    assert s3.head_object(Bucket=bucket, Key="mp/a")["Metadata"]["squall-label"] == "byte-41"
    assert tag_dict(s3, bucket, "mp/a")["squall-label"] == "byte-41"

    with pytest.raises(ClientError) as raised:
        _multipart(s3, bucket, "mp/zero", 0x00)
    assert raised.value.response["Error"]["Code"] == "RejectedByFunction"
    assert "zero-led uploads are refused" in raised.value.response["Error"]["Message"]

    routed = _multipart(s3, bucket, "mp/r", 0x01)
    assert routed["Key"] == "routed/mp/r"
    assert s3.head_object(Bucket=bucket, Key="routed/mp/r")["ContentLength"] == 5 * 1024 * 1024 + 4

    discarded = _multipart(s3, bucket, "mp/d", 0x02)
    assert support.verdict(discarded)["action"] == "discard"

    # Only what was stored is there; rejected and discarded uploads left nothing behind.
    assert sorted(support.keys(s3, bucket)) == ["mp/a", "routed/mp/r"]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize(("annotate", "metadata", "tags"), [
    ("metadata", True, False), ("tags", False, True), (False, False, False)])
def test_annotate_chooses_metadata_tags_or_neither(process, s3, bucket, annotate, metadata,
                                                   tags) -> None:  # type: ignore[no-untyped-def]
    name = f"sizes-{annotate}".lower()
    support.register(process, name, {**SIZES, "actions": [{"annotate": annotate}]})
    support.bind(s3, bucket, name)
    answer = s3.put_object(Bucket=bucket, Key="k", Body=b"hello", Tagging="team=vision")
    # The response carries the judgement whatever is stored.
    assert answer["ResponseMetadata"]["HTTPHeaders"]["x-amz-meta-squall-label"] == "small"
    stored = s3.head_object(Bucket=bucket, Key="k")["Metadata"]
    assert ("squall-label" in stored) == metadata
    expected_tags = {"team": "vision"}
    if tags:
        expected_tags |= {"squall-label": "small", "squall-score": "1.0000",
                          "squall-function": name}
    assert tag_dict(s3, bucket, "k") == expected_tags


def test_annotation_tags_keep_to_the_ten_tag_limit(process, s3, bucket) -> None:  # type: ignore[no-untyped-def]
    """With the request's own tags the object may not pass S3's 10: such a write is a clear
    400 that names the function, and nothing is stored (annotate: metadata avoids it)."""
    support.register(process, "sizes-tags", SIZES)
    support.bind(s3, bucket, "sizes-tags")
    seven = "&".join(f"t{i}=v" for i in range(7))
    s3.put_object(Bucket=bucket, Key="seven", Body=b"hello", Tagging=seven)
    assert len(tag_dict(s3, bucket, "seven")) == 10
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="eight", Body=b"hello", Tagging=seven + "&t7=v")
    error = raised.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
        "InvalidArgument", 400)
    assert "sizes-tags" in error["Error"]["Message"]
    assert "more than 10" in error["Error"]["Message"]
    assert sorted(support.keys(s3, bucket)) == ["seven"]
