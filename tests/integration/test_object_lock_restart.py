"""S3 Object Lock state is durable: a retention, a legal hold and a bucket's default
retention survive a restart of ``squall serve`` (SIGTERM) and a crash (SIGKILL), and the
restarted server still refuses to remove the protected versions."""

from __future__ import annotations

import datetime
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from squall.launcher import ServerProcess

ACCESS_KEY = "LOCKTESTROOT00000000"
SECRET_KEY = "lock-test-secret-0000000000000000000000"
BUCKET = "lock-restart"
UNTIL = datetime.datetime(2099, 1, 1, tzinfo=datetime.UTC)


def _client(url: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "s3", endpoint_url=url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _refused(call, **kwargs) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"]


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_lock_state_survives_a_restart(tmp_path: Path, how: str) -> None:
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as server:
        s3 = _client(server.url)
        s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        compliance = s3.put_object(Bucket=BUCKET, Key="compliance", Body=b"c",
                                   ObjectLockMode="COMPLIANCE",
                                   ObjectLockRetainUntilDate=UNTIL)["VersionId"]
        held = s3.put_object(Bucket=BUCKET, Key="held", Body=b"h",
                             ObjectLockLegalHoldStatus="ON")["VersionId"]
        s3.put_object_lock_configuration(Bucket=BUCKET, ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Years": 2}}})
        s3.close()
        if how == "sigkill":
            server.kill()  # every acknowledged write was synced (durable mode)
    with ServerProcess(data_dir, access_key=ACCESS_KEY, secret_key=SECRET_KEY) as restarted:
        s3 = _client(restarted.url)
        retention = s3.get_object_retention(Bucket=BUCKET, Key="compliance")["Retention"]
        assert retention == {"Mode": "COMPLIANCE", "RetainUntilDate": UNTIL}
        assert s3.get_object_legal_hold(Bucket=BUCKET, Key="held")["LegalHold"] == {
            "Status": "ON"}
        assert _refused(s3.delete_object, Bucket=BUCKET, Key="compliance", VersionId=compliance,
                        BypassGovernanceRetention=True) == "AccessDenied"
        assert _refused(s3.delete_object, Bucket=BUCKET, Key="held",
                        VersionId=held) == "AccessDenied"
        assert _refused(s3.put_bucket_versioning, Bucket=BUCKET,
                        VersioningConfiguration={"Status": "Suspended"}) == "InvalidBucketState"
        configuration = s3.get_object_lock_configuration(Bucket=BUCKET)["ObjectLockConfiguration"]
        assert configuration["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Years": 2}
        s3.put_object(Bucket=BUCKET, Key="new", Body=b"n")
        assert s3.head_object(Bucket=BUCKET, Key="new")["ObjectLockMode"] == "GOVERNANCE"
        s3.close()
