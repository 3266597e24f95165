"""Bucket features a bucket does not have: what AWS answers for a bucket on which they
were never configured, as tools read them (Terraform's bucket refresh, ``s3cmd info``).

References: Get/PutBucketRequestPayment, GetBucketAccelerateConfiguration,
Get/PutBucketLogging, Get/DeleteBucketWebsite, Get/DeleteBucketReplication,
GetBucket{Analytics,Inventory,Metrics,IntelligentTiering}Configuration and their List
operations in the S3 API reference. A write that would turn such a feature on is
501 NotImplemented on Squall, which does not offer it (AWS would turn it on: that test
is Squall's own, as the SSE refusals in test_objects.py).
"""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from s3compat_tests.support import error_code, http_status, signed_request


def _refusal(call, **arguments) -> tuple[str, int]:
    with pytest.raises(ClientError) as caught:
        call(**arguments)
    return error_code(caught.value), http_status(caught.value)


def test_requester_pays_is_off_and_can_be_set_off(s3, bucket) -> None:
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"
    s3.put_bucket_request_payment(Bucket=bucket,
                                  RequestPaymentConfiguration={"Payer": "BucketOwner"})
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"


def test_acceleration_was_never_configured(s3, bucket) -> None:
    answer = s3.get_bucket_accelerate_configuration(Bucket=bucket)
    assert "Status" not in answer


def test_logging_is_off_and_can_be_turned_off(s3, bucket) -> None:
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)
    s3.put_bucket_logging(Bucket=bucket, BucketLoggingStatus={})
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)


def test_no_website_and_no_replication(s3, bucket) -> None:
    assert _refusal(s3.get_bucket_website, Bucket=bucket) == (
        "NoSuchWebsiteConfiguration", 404)
    s3.delete_bucket_website(Bucket=bucket)  # nothing to delete: still 204
    assert _refusal(s3.get_bucket_replication, Bucket=bucket) == (
        "ReplicationConfigurationNotFoundError", 404)
    s3.delete_bucket_replication(Bucket=bucket)


@pytest.mark.parametrize("kind", ["analytics", "inventory", "metrics"])
def test_no_analytics_inventory_or_metrics_configurations(s3, bucket, kind) -> None:
    get, listing, field = {
        "analytics": (s3.get_bucket_analytics_configuration,
                      s3.list_bucket_analytics_configurations, "AnalyticsConfigurationList"),
        "inventory": (s3.get_bucket_inventory_configuration,
                      s3.list_bucket_inventory_configurations, "InventoryConfigurationList"),
        "metrics": (s3.get_bucket_metrics_configuration,
                    s3.list_bucket_metrics_configurations, "MetricsConfigurationList"),
    }[kind]
    assert _refusal(get, Bucket=bucket, Id="nothing") == ("NoSuchConfiguration", 404)
    answer = listing(Bucket=bucket)
    assert answer["IsTruncated"] is False and not answer.get(field)


def test_no_intelligent_tiering_configurations(s3, bucket) -> None:
    assert _refusal(s3.get_bucket_intelligent_tiering_configuration, Bucket=bucket,
                    Id="nothing") == ("NoSuchConfiguration", 404)
    answer = s3.list_bucket_intelligent_tiering_configurations(Bucket=bucket)
    assert answer["IsTruncated"] is False
    assert not answer.get("IntelligentTieringConfigurationList")


def test_a_missing_bucket_is_no_such_bucket(s3) -> None:
    missing = "squall-absent-features-no-such-bucket"
    for call in (s3.get_bucket_request_payment, s3.get_bucket_logging,
                 s3.get_bucket_accelerate_configuration, s3.get_bucket_website,
                 s3.list_bucket_metrics_configurations):
        assert _refusal(call, Bucket=missing) == ("NoSuchBucket", 404), call


def test_another_user_may_not_read_them(alt, bucket) -> None:
    for call in (alt.get_bucket_request_payment, alt.get_bucket_logging,
                 alt.get_bucket_website):
        assert _refusal(call, Bucket=bucket) == ("AccessDenied", 403), call


def test_s3cmd_info_reads_a_bucket(s3cmd, bucket) -> None:
    shown = s3cmd("info", f"s3://{bucket}")
    assert shown.returncode == 0, shown.stderr
    assert "Payer:" in shown.stdout and "BucketOwner" in shown.stdout


def test_turning_an_absent_feature_on_is_not_implemented(s3, bucket) -> None:
    """Never a 200 for a feature that stays off."""
    refusals = [
        (s3.put_bucket_request_payment, {"RequestPaymentConfiguration": {"Payer": "Requester"}}),
        (s3.put_bucket_logging, {"BucketLoggingStatus": {"LoggingEnabled": {
            "TargetBucket": bucket, "TargetPrefix": "logs/"}}}),
        (s3.put_bucket_accelerate_configuration,
         {"AccelerateConfiguration": {"Status": "Enabled"}}),
        (s3.put_bucket_website,
         {"WebsiteConfiguration": {"IndexDocument": {"Suffix": "index.html"}}}),
        (s3.put_bucket_metrics_configuration,
         {"Id": "all", "MetricsConfiguration": {"Id": "all"}}),
    ]
    for call, arguments in refusals:
        assert _refusal(call, Bucket=bucket, **arguments) == ("NotImplemented", 501), call
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"
    assert "LoggingEnabled" not in s3.get_bucket_logging(Bucket=bucket)


def test_malformed_documents_are_malformed_xml(s3_endpoint, http, bucket) -> None:
    for query, body in (("requestPayment", b"<RequestPaymentConfiguration><Payer>Someone"
                                            b"</Payer></RequestPaymentConfiguration>"),
                        ("requestPayment", b"<Nonsense/>"),
                        ("logging", b"<BucketLoggingStatus><Bogus/></BucketLoggingStatus>"),
                        ("logging", b"not xml at all")):
        response = signed_request(http, s3_endpoint, "PUT", f"/{bucket}", query=query,
                                  body=body)
        assert response.status_code == 400, (query, body, response.text)
        assert "<Code>MalformedXML</Code>" in response.text
