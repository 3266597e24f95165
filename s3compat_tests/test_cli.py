"""The aws cli (v1) and s3cmd, driven as subprocesses against the endpoint.

Both run with a temporary HOME and generated config files only, so nothing from the
developer's ~/.aws or ~/.s3cfg leaks in (the `aws` and `s3cmd` fixtures are in
conftest.py, shared with test_multipart_api.py). Files stay small: `aws s3 cp` switches
to multipart above 8 MB, which test_multipart_api.py covers.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from s3compat_tests.support import empty_and_delete_bucket, unique_bucket_name

pytestmark = pytest.mark.cli


# ---- aws cli (the `aws` fixture is in conftest.py) --------------------------------------


def test_aws_s3_cp_ls_rm(aws, s3, bucket, tmp_path):
    local = tmp_path / "hello world.txt"
    local.write_bytes(b"hello from the aws cli\n")
    aws("s3", "cp", str(local), f"s3://{bucket}/dir/hello world.txt")
    assert s3.get_object(Bucket=bucket, Key="dir/hello world.txt")["Body"].read() == (
        local.read_bytes()
    )

    listing = aws("s3", "ls", f"s3://{bucket}/dir/").stdout
    assert "hello world.txt" in listing
    assert str(len(local.read_bytes())) in listing
    assert "PRE dir/" in aws("s3", "ls", f"s3://{bucket}/").stdout

    downloaded = tmp_path / "downloaded.txt"
    aws("s3", "cp", f"s3://{bucket}/dir/hello world.txt", str(downloaded))
    assert downloaded.read_bytes() == local.read_bytes()

    aws("s3", "rm", f"s3://{bucket}/dir/hello world.txt")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_aws_s3_sync_both_ways(aws, s3, bucket, tmp_path):
    source = tmp_path / "source"
    (source / "nested" / "deeper").mkdir(parents=True)
    files = {
        "a.txt": b"alpha",
        "nested/b.bin": bytes(range(256)) * 10,
        "nested/deeper/c d+e.txt": b"gamma",
    }
    for relative, content in files.items():
        (source / relative).write_bytes(content)
    aws("s3", "sync", str(source), f"s3://{bucket}/tree")
    stored = {e["Key"] for e in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert stored == {f"tree/{relative}" for relative in files}

    # A second sync has nothing to do.
    assert "upload:" not in aws("s3", "sync", str(source), f"s3://{bucket}/tree").stdout

    (source / "a.txt").unlink()
    aws("s3", "sync", "--delete", str(source), f"s3://{bucket}/tree")
    stored = {e["Key"] for e in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "tree/a.txt" not in stored

    target = tmp_path / "target"
    aws("s3", "sync", f"s3://{bucket}/tree", str(target))
    for relative, content in files.items():
        if relative != "a.txt":
            assert (target / relative).read_bytes() == content
    assert not (target / "a.txt").exists()


def test_aws_s3_mb_rb(aws, s3, s3_endpoint):
    name = unique_bucket_name("awscli")
    try:
        aws("s3", "mb", f"s3://{name}")
        s3.head_bucket(Bucket=name)
        aws("s3", "rb", f"s3://{name}")
        assert name not in {entry["Name"] for entry in s3.list_buckets()["Buckets"]}
    finally:
        empty_and_delete_bucket(s3, name)


def test_aws_s3api(aws, bucket, tmp_path):
    body = tmp_path / "body.json"
    body.write_bytes(b'{"answer": 42}')
    put = json.loads(
        aws(
            "s3api", "put-object", "--bucket", bucket, "--key", "data/answer.json",
            "--body", str(body), "--content-type", "application/json",
            "--metadata", "owner=qa,purpose=s3compat",
        ).stdout
    )  # fmt: skip
    assert put["ETag"] == f'"{hashlib.md5(body.read_bytes()).hexdigest()}"'

    head = json.loads(
        aws("s3api", "head-object", "--bucket", bucket, "--key", "data/answer.json").stdout
    )
    assert head["ContentLength"] == len(body.read_bytes())
    assert head["ContentType"] == "application/json"
    assert head["Metadata"] == {"owner": "qa", "purpose": "s3compat"}
    assert head["ETag"] == put["ETag"]

    out = tmp_path / "out.json"
    got = json.loads(
        aws("s3api", "get-object", "--bucket", bucket, "--key", "data/answer.json", str(out)).stdout
    )
    assert out.read_bytes() == body.read_bytes()
    assert got["ETag"] == put["ETag"]

    listed = json.loads(
        aws(
            "s3api", "list-objects-v2", "--no-paginate", "--bucket", bucket, "--prefix", "data/"
        ).stdout
    )
    assert [entry["Key"] for entry in listed["Contents"]] == ["data/answer.json"]
    assert listed["KeyCount"] == 1


# ---- s3cmd (the `s3cmd` fixture is in conftest.py) --------------------------------------


def test_s3cmd_bucket_and_object_lifecycle(s3cmd, s3, tmp_path):
    name = unique_bucket_name("s3cmd")
    local = tmp_path / "s3cmd file.txt"
    local.write_bytes(b"uploaded by s3cmd\n" * 50)
    try:
        s3cmd("mb", f"s3://{name}")
        s3.head_bucket(Bucket=name)

        s3cmd("put", str(local), f"s3://{name}/docs/s3cmd file.txt")
        assert s3.get_object(Bucket=name, Key="docs/s3cmd file.txt")["Body"].read() == (
            local.read_bytes()
        )

        listing = s3cmd("ls", "--recursive", f"s3://{name}").stdout
        assert f"s3://{name}/docs/s3cmd file.txt" in listing
        assert str(len(local.read_bytes())) in listing
        assert f"s3://{name}" in s3cmd("ls").stdout

        info = s3cmd("info", f"s3://{name}/docs/s3cmd file.txt").stdout
        assert str(len(local.read_bytes())) in info
        assert s3.head_object(Bucket=name, Key="docs/s3cmd file.txt")["ETag"].strip('"') in info

        downloaded = tmp_path / "back.txt"
        s3cmd("get", f"s3://{name}/docs/s3cmd file.txt", str(downloaded))
        assert downloaded.read_bytes() == local.read_bytes()

        s3cmd("del", f"s3://{name}/docs/s3cmd file.txt")
        assert s3.list_objects_v2(Bucket=name)["KeyCount"] == 0
        s3cmd("rb", f"s3://{name}")
        assert name not in {entry["Name"] for entry in s3.list_buckets()["Buckets"]}
    finally:
        empty_and_delete_bucket(s3, name)
