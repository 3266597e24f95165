"""Users on a real ``squall serve``: the admin API, the CLI, --users, removal, restarts.

The S3 side of two users (grants, anonymous access, ownership) is in
s3compat_tests/test_users_acl.py; this file covers what is Squall's own: users come and
go through the admin API and take effect on the next request, only root administers,
and users and ACLs survive a restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from squall.admin_client import AdminClient, AdminError
from squall.launcher import ServerProcess

ROOT_KEY = "USERSTESTROOT0000000"
ROOT_SECRET = "users-test-root-secret-000000000000000"
ALICE_KEY, ALICE_SECRET = "ALICE0000000000000000", "alice-secret-0000000000"
BOB_KEY, BOB_SECRET = "BOB00000000000000000", "bob-secret-000000000000"


def _client(url: str, access_key: str | None, secret_key: str | None):  # type: ignore[no-untyped-def]
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                    signature_version=UNSIGNED if access_key is None else "s3v4")
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=access_key or "x",
                        aws_secret_access_key=secret_key or "x", region_name="us-east-1",
                        config=config)


def _code(error: ClientError) -> tuple[str, int]:
    return error.response["Error"]["Code"], error.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path / "data", access_key=ROOT_KEY, secret_key=ROOT_SECRET) as proc:
        yield proc


def _admin(server: ServerProcess, access_key: str = ROOT_KEY,
           secret_key: str = ROOT_SECRET) -> AdminClient:
    return AdminClient(server.url, access_key, secret_key)


def test_a_new_user_works_at_once_and_a_removed_one_is_refused_at_once(
        server: ServerProcess) -> None:
    admin = _admin(server)
    alice = _client(server.url, ALICE_KEY, ALICE_SECRET)
    with pytest.raises(ClientError) as caught:
        alice.list_buckets()
    assert _code(caught.value) == ("InvalidAccessKeyId", 403)
    shown = admin.put_user(ALICE_KEY, {"secret_key": ALICE_SECRET, "display_name": "Alice"})
    assert "secret_key" not in shown
    listing = alice.list_buckets()  # the very next request
    assert listing["Owner"] == {"ID": shown["canonical_id"], "DisplayName": "Alice"}
    alice.create_bucket(Bucket="alice-bucket")
    admin.delete_user(ALICE_KEY)
    with pytest.raises(ClientError) as caught:
        alice.list_objects_v2(Bucket="alice-bucket")  # the very next request
    assert _code(caught.value) == ("InvalidAccessKeyId", 403)
    # A secret change takes effect at once too: the old secret no longer signs.
    admin.put_user(ALICE_KEY, {"secret_key": "a-brand-new-secret"})
    with pytest.raises(ClientError) as caught:
        alice.list_buckets()
    assert _code(caught.value) == ("SignatureDoesNotMatch", 403)
    renewed = _client(server.url, ALICE_KEY, "a-brand-new-secret")
    assert [b["Name"] for b in renewed.list_buckets()["Buckets"]] == ["alice-bucket"]


def test_the_admin_api_never_shows_a_secret_and_is_roots_only(server: ServerProcess) -> None:
    admin = _admin(server)
    admin.put_user(ALICE_KEY, {"secret_key": ALICE_SECRET})
    admin.put_user(BOB_KEY, {"secret_key": BOB_SECRET, "display_name": "Bob"})
    users = admin.list_users()
    assert [(u["access_key"], u["display_name"]) for u in users] == [
        (ALICE_KEY, ALICE_KEY), (BOB_KEY, "Bob")]
    assert ALICE_SECRET not in json.dumps(users) and BOB_SECRET not in json.dumps(users)
    assert ALICE_SECRET not in json.dumps(admin.request("GET", f"/_squall/users/{ALICE_KEY}"))
    alice = _admin(server, ALICE_KEY, ALICE_SECRET)
    for method, path in (("GET", "/_squall/users"), ("PUT", f"/_squall/users/{BOB_KEY}"),
                         ("DELETE", f"/_squall/users/{BOB_KEY}"), ("GET", "/_squall/outbox"),
                         ("GET", "/_squall/metrics")):
        with pytest.raises(AdminError) as denied:
            alice.fetch(method, path, b'{"secret_key": "x-takeover-secret"}')
        assert denied.value.status == 403, (method, path)
    # Nobody but root reaches the system bucket, where the users are kept.
    with pytest.raises(ClientError) as caught:
        _client(server.url, ALICE_KEY, ALICE_SECRET).get_object(
            Bucket=".squall", Key=f"users/{BOB_KEY}")
    assert _code(caught.value)[1] in (400, 403)


@pytest.mark.parametrize(("access_key", "document", "message"), [
    ("ab", {"secret_key": "long-enough"}, "3 to 128 letters"),
    ("has-dash", {"secret_key": "long-enough"}, "letters (A-Z, a-z) and digits"),
    (ALICE_KEY, {"secret_key": "short"}, "secret_key: a string of 8"),
    (ALICE_KEY, {}, "secret_key"),
    (ALICE_KEY, {"secret_key": "long-enough", "email": "x"}, "unknown field(s): email"),
    (ROOT_KEY, {"secret_key": "long-enough"}, "root's access key"),
])
def test_invalid_users_are_clear_400s(server: ServerProcess, access_key: str,
                                      document: dict[str, str], message: str) -> None:
    with pytest.raises(AdminError) as caught:
        _admin(server).put_user(access_key, document)
    assert caught.value.status == 400
    assert message in caught.value.body


def test_removing_an_unknown_user_is_404(server: ServerProcess) -> None:
    with pytest.raises(AdminError) as caught:
        _admin(server).delete_user("NOSUCHUSER")
    assert caught.value.status == 404


def test_users_file_and_a_restart_keep_users_owners_and_acls(tmp_path: Path) -> None:
    users_file = tmp_path / "users.yaml"
    users_file.write_text(f"- access_key: {ALICE_KEY}\n  secret_key: {ALICE_SECRET}\n"
                          f"  display_name: Alice\n")
    data = tmp_path / "data"
    arguments = ("--users", str(users_file))
    with ServerProcess(data, access_key=ROOT_KEY, secret_key=ROOT_SECRET,
                       extra_args=arguments) as first:
        alice = _client(first.url, ALICE_KEY, ALICE_SECRET)
        alice.create_bucket(Bucket="kept", ObjectOwnership="ObjectWriter")
        alice.put_object(Bucket="kept", Key="public", Body=b"p", ACL="public-read")
        alice.put_object(Bucket="kept", Key="private", Body=b"q")
        _admin(first).put_user(BOB_KEY, {"secret_key": BOB_SECRET})
        bob_id = _client(first.url, BOB_KEY, BOB_SECRET).list_buckets()["Owner"]["ID"]
        alice.put_bucket_acl(Bucket="kept", GrantRead=f'id="{bob_id}"',
                             GrantFullControl=f'id="{alice.list_buckets()["Owner"]["ID"]}"')
    with ServerProcess(data, access_key=ROOT_KEY, secret_key=ROOT_SECRET) as second:
        alice = _client(second.url, ALICE_KEY, ALICE_SECRET)
        bob = _client(second.url, BOB_KEY, BOB_SECRET)
        anonymous = _client(second.url, None, None)
        assert [b["Name"] for b in alice.list_buckets()["Buckets"]] == ["kept"]
        assert bob.list_buckets()["Buckets"] == []
        assert anonymous.get_object(Bucket="kept", Key="public")["Body"].read() == b"p"
        with pytest.raises(ClientError) as caught:
            anonymous.get_object(Bucket="kept", Key="private")
        assert _code(caught.value) == ("AccessDenied", 403)
        listed = bob.list_objects_v2(Bucket="kept", FetchOwner=True)["Contents"]
        assert {o["Owner"]["DisplayName"] for o in listed} == {"Alice"}
        with pytest.raises(ClientError) as caught:
            bob.get_object(Bucket="kept", Key="private")
        assert _code(caught.value) == ("AccessDenied", 403)


def test_a_malformed_users_file_stops_the_server_with_a_message(tmp_path: Path) -> None:
    users_file = tmp_path / "users.json"
    users_file.write_text(json.dumps([{"access_key": ALICE_KEY, "secret_key": "short"}]))
    server = ServerProcess(tmp_path / "data", access_key=ROOT_KEY, secret_key=ROOT_SECRET,
                           extra_args=("--users", str(users_file)))
    with pytest.raises(RuntimeError) as caught:
        server.start()
    server.close()
    assert "entry 1: secret_key: a string of 8" in str(caught.value)


def test_the_user_cli(server: ServerProcess) -> None:
    env = {**os.environ, "SQUALL_ROOT_USER": ROOT_KEY, "SQUALL_ROOT_PASSWORD": ROOT_SECRET,
           "SQUALL_ENDPOINT": server.url}

    def squall(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "squall", "user", *arguments], env=env,
                              capture_output=True, text=True, timeout=60, check=False)

    put = squall("put", ALICE_KEY, "--secret-key", ALICE_SECRET, "--display-name", "Alice")
    assert put.returncode == 0, put.stderr
    assert put.stdout.startswith(f"stored {ALICE_KEY} (canonical id ")
    listed = squall("ls")
    assert listed.returncode == 0 and listed.stdout.startswith(f"{ALICE_KEY}\tAlice\t")
    assert ALICE_SECRET not in listed.stdout
    assert httpx.get(server.url + "/").status_code == 403  # anonymous: still refused
    bad = squall("put", "x", "--secret-key", ALICE_SECRET)
    assert bad.returncode == 1 and "3 to 128 letters" in bad.stderr
    assert squall("rm", ALICE_KEY).returncode == 0
    assert squall("ls").stdout == ""
