"""``squall backup``: a consistent copy of a store taken while a real server serves it and
a client keeps writing; the copy, served by a second real server, has every object
written before the backup began, byte for byte, with its versions, tags and bucket
settings, and of the writes that raced it only whole objects; an encrypted store's copy
opens only with its key; a backup never overwrites anything."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from squall.launcher import ServerProcess
from storage.engine.backup import BackupError, backup
from tests.integration import triggers_support as support

pytestmark = pytest.mark.slow


def squall_backup(data_dir: Path, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "squall", "backup", "--data-dir",
                           str(data_dir), str(dest)], capture_output=True, text=True,
                          timeout=300, check=False)


def server(data_dir: Path, *extra: str) -> ServerProcess:
    return ServerProcess(data_dir, access_key=support.ACCESS_KEY,
                         secret_key=support.SECRET_KEY, extra_args=extra)


def test_a_backup_taken_while_writing_is_whole_and_serves(tmp_path: Path) -> None:
    data, copy = tmp_path / "data", tmp_path / "copy"
    before: dict[str, bytes] = {}
    raced: dict[str, bytes] = {}
    with server(data) as live:
        s3 = support.s3_client(live.url)
        s3.create_bucket(Bucket="kept")
        s3.put_bucket_versioning(Bucket="kept", VersioningConfiguration={"Status": "Enabled"})
        s3.put_bucket_tagging(Bucket="kept", Tagging={"TagSet": [{"Key": "team",
                                                                  "Value": "ml"}]})
        first = s3.put_object(Bucket="kept", Key="doc", Body=b"first")["VersionId"]
        s3.put_object(Bucket="kept", Key="doc", Body=b"second", Tagging="state=final")
        for n in range(20):
            body = os.urandom(1000 + n * 150_000)  # up to ~2.9 MiB: several chunks
            s3.put_object(Bucket="kept", Key=f"obj/{n}", Body=body)
            before[f"obj/{n}"] = body

        stop = threading.Event()

        def keep_writing() -> None:
            writer = support.s3_client(live.url)
            n = 0
            while not stop.is_set():
                body = os.urandom(700_000)
                writer.put_object(Bucket="kept", Key=f"race/{n}", Body=body)
                raced[f"race/{n}"] = body
                n += 1

        racer = threading.Thread(target=keep_writing)
        racer.start()
        try:
            taken = squall_backup(data, copy)
        finally:
            stop.set()
            racer.join()
        assert taken.returncode == 0, taken.stderr
        assert "copied" in taken.stderr and "100 %" in taken.stderr  # progress was shown
        assert "buckets 2" in taken.stdout  # kept, and the triggers' system bucket
        # squall verify checks the serving store (read-only) and the copy: both whole.
        for checked in (data, copy):
            verified = subprocess.run([sys.executable, "-m", "squall", "verify",
                                       "--data-dir", str(checked)], capture_output=True,
                                      text=True, timeout=300, check=False)
            assert verified.returncode == 0, verified.stdout + verified.stderr
            assert "0 problem(s)" in verified.stdout
    assert raced, "the writer raced the backup"

    with server(copy) as restored:
        s3 = support.s3_client(restored.url)
        for key, body in before.items():
            assert s3.get_object(Bucket="kept", Key=key)["Body"].read() == body, key
        versions = s3.list_object_versions(Bucket="kept", Prefix="doc")["Versions"]
        assert len(versions) == 2
        assert s3.get_object(Bucket="kept", Key="doc", VersionId=first)["Body"].read() == (
            b"first")
        assert s3.get_object_tagging(Bucket="kept", Key="doc")["TagSet"] == [
            {"Key": "state", "Value": "final"}]
        assert s3.get_bucket_tagging(Bucket="kept")["TagSet"] == [{"Key": "team",
                                                                   "Value": "ml"}]
        assert s3.get_bucket_versioning(Bucket="kept")["Status"] == "Enabled"
        # Of the racing writes, those in the snapshot are whole; the rest are absent.
        listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket="kept",
                                                          Prefix="race/").get("Contents", [])}
        for key, entry in listed.items():
            body = s3.get_object(Bucket="kept", Key=key)["Body"].read()
            assert body == raced[key]
            assert entry["ETag"].strip('"') == hashlib.md5(body).hexdigest()
        # The copy is a store of its own: it takes writes without touching the original.
        s3.put_object(Bucket="kept", Key="after", Body=b"only in the copy")
    with server(data) as original:
        with pytest.raises(ClientError):
            support.s3_client(original.url).head_object(Bucket="kept", Key="after")


def test_an_encrypted_store_s_backup_needs_its_key(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(os.urandom(32))
    data, copy = tmp_path / "data", tmp_path / "copy"
    with server(data, "--encryption-key-file", str(key_file)) as live:
        s3 = support.s3_client(live.url)
        s3.create_bucket(Bucket="vault")
        s3.put_object(Bucket="vault", Key="k", Body=b"secret body")
        taken = squall_backup(data, copy)
    assert taken.returncode == 0, taken.stderr
    assert "encrypted with key id" in taken.stdout
    assert b"secret body" not in (copy / "data.mdb").read_bytes()
    unkeyed = server(copy)
    try:
        with pytest.raises(RuntimeError, match="encrypted at rest"):
            unkeyed.start()
    finally:
        unkeyed.close()
    with server(copy, "--encryption-key-file", str(key_file)) as restored:
        body = support.s3_client(restored.url).get_object(Bucket="vault", Key="k")["Body"]
        assert body.read() == b"secret body"


def test_a_backup_never_overwrites_and_leaves_nothing_when_it_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with server(data) as live:
        support.s3_client(live.url).create_bucket(Bucket="kept")
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "something").write_text("mine")
    refused = squall_backup(data, occupied)
    assert refused.returncode == 1 and "not an empty directory" in refused.stderr
    assert [p.name for p in occupied.iterdir()] == ["something"]
    missing = squall_backup(tmp_path / "nothing-here", tmp_path / "dest")
    assert missing.returncode == 1 and "holds no store" in missing.stderr
    assert not (tmp_path / "dest").exists()
    with pytest.raises(BackupError):
        backup(data, occupied)
    # An empty directory is fine, and progress ends at the whole size.
    empty = tmp_path / "empty"
    empty.mkdir()
    reports: list[tuple[int, int]] = []
    summary = backup(data, empty, lambda done, bound: reports.append((done, bound)))
    assert reports[-1] == (summary.bytes_written, summary.bytes_written)
    assert summary.entries["buckets"] == 2  # kept, and the triggers' system bucket
    assert summary.bytes_written == (empty / "data.mdb").stat().st_size


def test_a_backup_through_the_admin_api(tmp_path: Path) -> None:
    """``squall backup --endpoint``: the server streams its own snapshot to root; anyone
    else is refused; the copy serves."""
    data, copy = tmp_path / "data", tmp_path / "copy"
    with server(data) as live:
        s3 = support.s3_client(live.url)
        s3.create_bucket(Bucket="remote")
        body = os.urandom(3 * 1024 * 1024 + 5)
        s3.put_object(Bucket="remote", Key="big", Body=body)
        env = {**os.environ, "SQUALL_ROOT_USER": support.ACCESS_KEY,
               "SQUALL_ROOT_PASSWORD": support.SECRET_KEY}
        taken = subprocess.run([sys.executable, "-m", "squall", "backup", "--endpoint",
                                live.url, str(copy)], capture_output=True, text=True,
                               timeout=300, env=env, check=False)
        assert taken.returncode == 0, taken.stderr
        assert f"backup of {live.url} in {copy}" in taken.stdout and "versions 1" in taken.stdout
        # Only root: a second user is refused, and nothing is written.
        admin = support.admin(live)
        admin.put_user("BACKUPREADER00000000", {"secret_key": "reader-secret-0000000000000000"})
        refused = subprocess.run(
            [sys.executable, "-m", "squall", "backup", "--endpoint", live.url,
             str(tmp_path / "refused")], capture_output=True, text=True, timeout=120,
            env={**env, "SQUALL_ROOT_USER": "BACKUPREADER00000000",
                 "SQUALL_ROOT_PASSWORD": "reader-secret-0000000000000000"}, check=False)
        assert refused.returncode == 1 and "403" in refused.stderr
        assert not (tmp_path / "refused").exists()
        missing_shard = subprocess.run(
            [sys.executable, "-m", "squall", "backup", "--endpoint", live.url, "--shard", "7",
             str(tmp_path / "shard7")], capture_output=True, text=True, timeout=120,
            env=env, check=False)
        assert missing_shard.returncode == 1 and "No shard '7'" in missing_shard.stderr
    with server(copy) as restored:
        got = support.s3_client(restored.url).get_object(Bucket="remote", Key="big")
        assert got["Body"].read() == body
