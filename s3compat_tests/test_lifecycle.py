"""Put/Get/DeleteBucketLifecycleConfiguration: the configuration API.

AWS applies lifecycle rules about once a day, so a conformance suite can only judge the
configuration API; Squall's sweeper itself is tested with an injected clock in
tests/unit/test_lifecycle.py. References: the PutBucketLifecycleConfiguration API page
and "Lifecycle configuration elements" in the S3 user guide.
"""

from __future__ import annotations

import datetime
import re
from email.utils import parsedate_to_datetime

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import error_code, http_status

RULES = [
    {
        "ID": "expire-logs",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 30},
        "NoncurrentVersionExpiration": {"NoncurrentDays": 7, "NewerNoncurrentVersions": 2},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 3},
    },
    {
        "ID": "tmp-tagged",
        "Filter": {"And": {"Prefix": "tmp/", "Tags": [{"Key": "class", "Value": "scratch"}]}},
        "Status": "Disabled",
        "Expiration": {"Date": datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)},
    },
    {
        "ID": "markers",
        "Filter": {},
        "Status": "Enabled",
        "Expiration": {"ExpiredObjectDeleteMarker": True},
    },
]


def _put(s3, bucket, rules):
    return s3.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": rules}
    )


def _expect_error(call, code, status=400):
    with pytest.raises(ClientError) as caught:
        call()
    assert (error_code(caught.value), http_status(caught.value)) == (code, status)
    return caught.value.response["Error"]


def test_put_get_delete_lifecycle(s3, bucket):
    assert http_status(_put(s3, bucket, RULES)) == 200
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    by_id = {rule["ID"]: rule for rule in rules}
    assert by_id["expire-logs"]["Filter"] == {"Prefix": "logs/"}
    assert by_id["expire-logs"]["Expiration"] == {"Days": 30}
    assert by_id["expire-logs"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": 7, "NewerNoncurrentVersions": 2}
    assert by_id["expire-logs"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 3}
    assert by_id["tmp-tagged"]["Status"] == "Disabled"
    assert by_id["tmp-tagged"]["Filter"]["And"]["Tags"] == [{"Key": "class", "Value": "scratch"}]
    assert by_id["tmp-tagged"]["Expiration"]["Date"] == datetime.datetime(
        2030, 1, 1, tzinfo=datetime.UTC)
    assert by_id["markers"]["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert http_status(s3.delete_bucket_lifecycle(Bucket=bucket)) == 204
    _expect_error(lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket),
                  "NoSuchLifecycleConfiguration", 404)


def test_get_lifecycle_without_configuration(s3, bucket):
    _expect_error(lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket),
                  "NoSuchLifecycleConfiguration", 404)


def test_a_put_replaces_the_whole_configuration(s3, bucket):
    _put(s3, bucket, RULES)
    _put(s3, bucket, [RULES[2]])
    rules = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert [rule["ID"] for rule in rules] == ["markers"]


def test_legacy_prefix_rule(s3, bucket):
    _put(s3, bucket, [{"ID": "old", "Prefix": "a/", "Status": "Enabled",
                       "Expiration": {"Days": 1}}])
    (rule,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule.get("Prefix", rule.get("Filter", {}).get("Prefix")) == "a/"


def test_expiration_days_must_be_positive(s3, bucket):
    rule = {"ID": "r", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 0}}
    error = _expect_error(lambda: _put(s3, bucket, [rule]), "InvalidArgument")
    assert error["Message"] == "'Days' for Expiration action must be a positive integer"


def test_noncurrent_days_must_be_positive(s3, bucket):
    rule = {"ID": "r", "Filter": {}, "Status": "Enabled",
            "NoncurrentVersionExpiration": {"NoncurrentDays": 0}}
    _expect_error(lambda: _put(s3, bucket, [rule]), "InvalidArgument")


def test_expiration_date_must_be_midnight_utc(s3, bucket):
    noon = datetime.datetime(2030, 1, 1, 12, tzinfo=datetime.UTC)
    rule = {"ID": "r", "Filter": {}, "Status": "Enabled", "Expiration": {"Date": noon}}
    _expect_error(lambda: _put(s3, bucket, [rule]), "InvalidArgument")


def test_a_rule_needs_an_action(s3, bucket):
    rule = {"ID": "r", "Filter": {"Prefix": "x/"}, "Status": "Enabled"}
    _expect_error(lambda: _put(s3, bucket, [rule]), "InvalidRequest")


def test_status_must_be_enabled_or_disabled(s3, bucket):
    rule = {"ID": "r", "Filter": {}, "Status": "Sometimes", "Expiration": {"Days": 1}}
    _expect_error(lambda: _put(s3, bucket, [rule]), "MalformedXML")


def test_rule_ids_must_be_unique(s3, bucket):
    rule = {"ID": "same", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}}
    _expect_error(lambda: _put(s3, bucket, [rule, rule]), "InvalidArgument")


def test_filter_with_two_predicates_needs_and(s3, bucket):
    rule = {"ID": "r", "Status": "Enabled", "Expiration": {"Days": 1},
            "Filter": {"Prefix": "a/", "Tag": {"Key": "k", "Value": "v"}}}
    _expect_error(lambda: _put(s3, bucket, [rule]), "MalformedXML")


def test_abort_multipart_cannot_use_tags(s3, bucket):
    rule = {"ID": "r", "Status": "Enabled", "Filter": {"Tag": {"Key": "k", "Value": "v"}},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}
    _expect_error(lambda: _put(s3, bucket, [rule]), "InvalidRequest")


def test_lifecycle_on_a_missing_bucket(s3):
    _expect_error(lambda: _put(s3, "s3compat-no-such-bucket-lifecycle", RULES[:1]),
                  "NoSuchBucket", 404)


def test_a_rule_without_an_id_gets_one(s3, bucket):
    # AWS gives every rule an ID; GetBucketLifecycleConfiguration always shows it.
    rules = [{"Filter": {"Prefix": "a/"}, "Status": "Enabled", "Expiration": {"Days": 1}},
             {"ID": "named", "Filter": {"Prefix": "b/"}, "Status": "Enabled",
              "Expiration": {"Days": 2}}]
    _put(s3, bucket, rules)
    stored = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    by_prefix = {rule["Filter"]["Prefix"]: rule for rule in stored}
    assert by_prefix["a/"]["ID"] not in ("", "named")
    assert by_prefix["a/"]["Expiration"] == {"Days": 1}
    assert by_prefix["b/"]["ID"] == "named"
    # A later Put may name the generated ID like any other (IDs stay unique).
    _put(s3, bucket, stored)
    again = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert sorted(rule["ID"] for rule in again) == sorted(rule["ID"] for rule in stored)


def test_transition_with_a_date_not_at_midnight(s3, bucket):
    # The request is malformed whether or not the server has other storage classes:
    # AWS's 400 comes before any answer about transitions themselves.
    rules = [{"ID": "r", "Filter": {"Prefix": "a/"}, "Status": "Enabled",
              "Transitions": [{"Date": datetime.datetime(2030, 1, 1, 12, tzinfo=datetime.UTC),
                               "StorageClass": "GLACIER"}]}]
    _expect_error(lambda: _put(s3, bucket, rules), "InvalidArgument")


# --- x-amz-expiration: when the rules will expire an object -------------------------------

EXPIRATION = re.compile(r'expiry-date="([^"]+)", rule-id="([^"]+)"')


def _expiration(response) -> tuple[datetime.datetime, str] | None:
    header = response["ResponseMetadata"]["HTTPHeaders"].get("x-amz-expiration")
    if header is None:
        return None
    found = EXPIRATION.fullmatch(header)
    assert found, header
    return parsedate_to_datetime(found.group(1)), found.group(2)


def _expect_expiration(response, rule_id: str, days: int, written: datetime.datetime) -> None:
    expiry = _expiration(response)
    assert expiry is not None
    when, named = expiry
    assert named == rule_id
    # AWS: creation + N days, rounded up to the next midnight UTC.
    assert (when.hour, when.minute, when.second) == (0, 0, 0)
    assert datetime.timedelta(days=days) <= when - written <= datetime.timedelta(days=days + 1)


def test_expiration_header_on_put_get_head(s3, bucket):
    _put(s3, bucket, [{"ID": "one-day", "Filter": {"Prefix": "days1/"}, "Status": "Enabled",
                       "Expiration": {"Days": 1}}])
    written = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    _expect_expiration(s3.put_object(Bucket=bucket, Key="days1/a", Body=b"x"), "one-day", 1,
                       written)
    _expect_expiration(s3.head_object(Bucket=bucket, Key="days1/a"), "one-day", 1, written)
    _expect_expiration(s3.get_object(Bucket=bucket, Key="days1/a"), "one-day", 1, written)
    # Outside the rule's filter: no header.
    assert _expiration(s3.put_object(Bucket=bucket, Key="other/a", Body=b"x")) is None


def test_expiration_header_follows_the_configuration(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    assert _expiration(s3.head_object(Bucket=bucket, Key="k")) is None
    _put(s3, bucket, [{"ID": "tagged", "Filter": {"Tag": {"Key": "t", "Value": "1"}},
                       "Status": "Enabled", "Expiration": {"Days": 3}}])
    assert _expiration(s3.head_object(Bucket=bucket, Key="k")) is None  # no tag yet
    s3.put_object_tagging(Bucket=bucket, Key="k", Tagging={"TagSet": [{"Key": "t", "Value": "1"}]})
    assert _expiration(s3.head_object(Bucket=bucket, Key="k"))[1] == "tagged"
    s3.delete_bucket_lifecycle(Bucket=bucket)
    assert _expiration(s3.head_object(Bucket=bucket, Key="k")) is None


def test_expiration_header_on_copy_and_complete(s3, bucket):
    _put(s3, bucket, [{"ID": "all", "Filter": {}, "Status": "Enabled",
                       "Expiration": {"Days": 7}}])
    s3.put_object(Bucket=bucket, Key="src", Body=b"x")
    copied = s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert _expiration(copied)[1] == "all"
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload, PartNumber=1, Body=b"y")
    completed = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert _expiration(completed)[1] == "all"
