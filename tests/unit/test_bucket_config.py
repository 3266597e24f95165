"""Bucket configuration documents at the gateway: routes, parsers, golden XML, matching."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest

from gateway.errors import S3Error
from gateway.router import Endpoint, route
from gateway.s3.acl import render_owner_acl
from gateway.s3.buckets import list_buckets_page, parse_max_buckets
from gateway.s3.common import Owner
from gateway.s3.cors import (
    CorsRule,
    ParsedCorsCache,
    matching_rule,
    parse_cors,
    render_cors,
    wildcard_match,
)
from gateway.s3.lifecycle import parse_lifecycle, with_rule_ids
from gateway.s3.policy import check_policy, policy_is_public
from gateway.s3.settings import (
    parse_ownership_controls,
    parse_public_access_block,
    render_ownership_controls,
    render_public_access_block,
)
from storage.api import BucketInfo, LifecycleRule


def _route(line: str) -> Endpoint:
    method, target = line.split(" ", 1)
    path, _, query = target.partition("?")
    return route(method, path, parse_qs(query, keep_blank_values=True), {"host": "h"}, ())


@pytest.mark.parametrize(
    ("line", "operation"),
    [
        ("PUT /b?cors", "PutBucketCors"),
        ("GET /b?cors", "GetBucketCors"),
        ("DELETE /b?cors", "DeleteBucketCors"),
        ("PUT /b?lifecycle", "PutBucketLifecycleConfiguration"),
        ("GET /b?lifecycle", "GetBucketLifecycleConfiguration"),
        ("DELETE /b?lifecycle", "DeleteBucketLifecycle"),
        ("GET /b?acl", "GetBucketAcl"),
        ("PUT /b?acl", "PutBucketAcl"),
        ("GET /b/k?acl", "GetObjectAcl"),
        ("GET /b/k?acl&versionId=x", "GetObjectAcl"),
        ("PUT /b/k?acl", "PutObjectAcl"),
        ("PUT /b?policy", "PutBucketPolicy"),
        ("GET /b?policy", "GetBucketPolicy"),
        ("DELETE /b?policy", "DeleteBucketPolicy"),
        ("GET /b?encryption", "GetBucketEncryption"),
        ("GET /b?requestPayment", "GetBucketRequestPayment"),
        ("PUT /b?requestPayment", "PutBucketRequestPayment"),
        ("GET /b?accelerate", "GetBucketAccelerateConfiguration"),
        ("GET /b?logging", "GetBucketLogging"),
        ("PUT /b?logging", "PutBucketLogging"),
        ("GET /b?website", "GetBucketWebsite"),
        ("DELETE /b?website", "DeleteBucketWebsite"),
        ("GET /b?replication", "GetBucketReplication"),
        ("DELETE /b?replication", "DeleteBucketReplication"),
        ("GET /b?analytics&id=x", "ListBucketAnalyticsConfigurations"),
        ("GET /b?inventory", "ListBucketInventoryConfigurations"),
        ("GET /b?metrics", "ListBucketMetricsConfigurations"),
        ("GET /b?intelligent-tiering", "ListBucketIntelligentTieringConfigurations"),
        ("GET /b?ownershipControls", "GetBucketOwnershipControls"),
        ("GET /b?publicAccessBlock", "GetPublicAccessBlock"),
        ("PUT /b?ownershipControls", "PutBucketOwnershipControls"),
        ("DELETE /b?ownershipControls", "DeleteBucketOwnershipControls"),
        ("PUT /b?publicAccessBlock", "PutPublicAccessBlock"),
        ("DELETE /b?publicAccessBlock", "DeletePublicAccessBlock"),
        ("GET /b?policyStatus", "GetBucketPolicyStatus"),
        ("OPTIONS /b/k", "PreflightCors"),
        ("OPTIONS /b/k?uploads", "PreflightCors"),
        ("OPTIONS /b", "PreflightCors"),
    ],
)
def test_bucket_config_routes(line: str, operation: str) -> None:
    assert _route(line).operation == operation


def test_options_on_the_service_is_not_a_preflight() -> None:
    with pytest.raises(S3Error) as caught:
        _route("OPTIONS /")
    assert caught.value.code == "MethodNotAllowed"


# --- CORS ---------------------------------------------------------------------------------

# The example of AWS's PutBucketCors API reference.
AWS_CORS_EXAMPLE = b"""<CORSConfiguration>
 <CORSRule>
   <AllowedOrigin>http://www.example.com</AllowedOrigin>
   <AllowedMethod>PUT</AllowedMethod>
   <AllowedMethod>POST</AllowedMethod>
   <AllowedMethod>DELETE</AllowedMethod>
   <AllowedHeader>*</AllowedHeader>
   <MaxAgeSeconds>3000</MaxAgeSeconds>
   <ExposeHeader>x-amz-server-side-encryption</ExposeHeader>
 </CORSRule>
 <CORSRule>
   <AllowedOrigin>*</AllowedOrigin>
   <AllowedMethod>GET</AllowedMethod>
   <AllowedHeader>*</AllowedHeader>
   <MaxAgeSeconds>3000</MaxAgeSeconds>
 </CORSRule>
</CORSConfiguration>"""


def test_cors_example_parses_and_renders_canonically() -> None:
    rules = parse_cors(AWS_CORS_EXAMPLE)
    assert rules[0] == CorsRule(("http://www.example.com",), ("PUT", "POST", "DELETE"), ("*",),
                                ("x-amz-server-side-encryption",), 3000)
    assert render_cors(rules) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><CORSRule>'
        b"<AllowedHeader>*</AllowedHeader><AllowedMethod>PUT</AllowedMethod>"
        b"<AllowedMethod>POST</AllowedMethod><AllowedMethod>DELETE</AllowedMethod>"
        b"<AllowedOrigin>http://www.example.com</AllowedOrigin>"
        b"<ExposeHeader>x-amz-server-side-encryption</ExposeHeader>"
        b"<MaxAgeSeconds>3000</MaxAgeSeconds></CORSRule><CORSRule>"
        b"<AllowedHeader>*</AllowedHeader><AllowedMethod>GET</AllowedMethod>"
        b"<AllowedOrigin>*</AllowedOrigin><MaxAgeSeconds>3000</MaxAgeSeconds></CORSRule>"
        b"</CORSConfiguration>"
    )
    assert parse_cors(render_cors(rules)) == rules


def _cors(rule_body: str, rules: int = 1) -> bytes:
    return ("<CORSConfiguration>" + f"<CORSRule>{rule_body}</CORSRule>" * rules
            + "</CORSConfiguration>").encode()


ORIGIN_GET = "<AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"<CORSConfiguration/>", "MalformedXML"),
        (_cors("<AllowedMethod>GET</AllowedMethod>"), "MalformedXML"),
        (_cors("<AllowedOrigin>*</AllowedOrigin>"), "MalformedXML"),
        (_cors(ORIGIN_GET + "<Unknown>x</Unknown>"), "MalformedXML"),
        (_cors(ORIGIN_GET + "<MaxAgeSeconds>soon</MaxAgeSeconds>"), "MalformedXML"),
        (_cors("<AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod>"),
         "InvalidRequest"),
        (_cors("<AllowedOrigin>*.*.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod>"),
         "InvalidRequest"),
        (_cors(ORIGIN_GET + "<AllowedHeader>x-*-*</AllowedHeader>"), "InvalidRequest"),
        (_cors(ORIGIN_GET, rules=101), "InvalidRequest"),
    ],
)
def test_invalid_cors_configurations(body: bytes, code: str) -> None:
    with pytest.raises(S3Error) as caught:
        parse_cors(body)
    assert caught.value.code == code


def test_a_hundred_cors_rules_are_allowed() -> None:
    assert len(parse_cors(_cors(ORIGIN_GET, rules=100))) == 100


def test_wildcards_match_any_run_of_characters() -> None:
    assert wildcard_match("*", "")
    assert wildcard_match("http://*.example.com", "http://www.example.com")
    assert not wildcard_match("http://*.example.com", "http://example.com")
    assert not wildcard_match("http://*.example.com", "https://www.example.com")
    assert wildcard_match("x-amz-*", "x-amz-date")
    assert not wildcard_match("a*a", "a")


def test_the_first_rule_allowing_origin_method_and_headers_wins() -> None:
    rules = parse_cors(AWS_CORS_EXAMPLE)
    assert matching_rule(rules, "http://www.example.com", "PUT", ["X-Custom"]) is rules[0]
    assert matching_rule(rules, "http://other.test", "GET") is rules[1]
    assert matching_rule(rules, "http://other.test", "PUT") is None
    strict = parse_cors(_cors(ORIGIN_GET + "<AllowedHeader>x-amz-*</AllowedHeader>"))
    assert matching_rule(strict, "o", "GET", ["X-Amz-Date"]) is strict[0]
    assert matching_rule(strict, "o", "GET", ["X-Amz-Date", "authorization"]) is None


def test_parsed_cors_cache_is_keyed_by_the_document_and_bounded() -> None:
    cache = ParsedCorsCache(entries_max=2)
    first = render_cors(parse_cors(_cors(ORIGIN_GET)))
    assert cache.rules(first) is cache.rules(first)
    for index in range(3):
        cache.rules(render_cors(parse_cors(_cors(ORIGIN_GET + f"<ID>{index}</ID>"))))
    assert len(cache._entries) == 2


# --- lifecycle ------------------------------------------------------------------------------


def _lifecycle(*rules: str) -> bytes:
    return ("<LifecycleConfiguration>" + "".join(f"<Rule>{r}</Rule>" for r in rules)
            + "</LifecycleConfiguration>").encode()


def test_lifecycle_rules_are_normalised_for_storage() -> None:
    configuration = parse_lifecycle(_lifecycle(
        "<ID>logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status>"
        "<Expiration><Days>30</Days></Expiration>"
        "<NoncurrentVersionExpiration><NoncurrentDays>7</NoncurrentDays>"
        "<NewerNoncurrentVersions>3</NewerNoncurrentVersions></NoncurrentVersionExpiration>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation>"
        "</AbortIncompleteMultipartUpload>",
        "<ID>tagged</ID><Filter><And><Prefix>tmp/</Prefix><Tag><Key>a</Key><Value>1</Value>"
        "</Tag><Tag><Key>b</Key><Value>2</Value></Tag><ObjectSizeGreaterThan>10"
        "</ObjectSizeGreaterThan></And></Filter><Status>Disabled</Status>"
        "<Expiration><Date>2030-01-01T00:00:00.000Z</Date></Expiration>",
        "<ID>legacy</ID><Prefix></Prefix><Status>Enabled</Status>"
        "<Expiration><ExpiredObjectDeleteMarker>true</ExpiredObjectDeleteMarker></Expiration>",
    ))
    assert configuration.rules == (
        LifecycleRule("logs", True, prefix="logs/", expiration_days=30, noncurrent_days=7,
                      newer_noncurrent_versions=3, abort_incomplete_multipart_days=2),
        LifecycleRule("tagged", False, prefix="tmp/", tags={"a": "1", "b": "2"},
                      object_size_greater_than_bytes=10, expiration_date_ms=1893456000000),
        LifecycleRule("legacy", True, expired_object_delete_marker=True),
    )


EXPIRE_1 = "<Expiration><Days>1</Days></Expiration>"
ENABLED_ALL = "<Filter></Filter><Status>Enabled</Status>"


@pytest.mark.parametrize(
    ("rule", "code", "message"),
    [
        (ENABLED_ALL + "<Expiration><Days>0</Days></Expiration>", "InvalidArgument",
         "'Days' for Expiration action must be a positive integer"),
        (ENABLED_ALL + "<NoncurrentVersionExpiration><NoncurrentDays>-1</NoncurrentDays>"
         "</NoncurrentVersionExpiration>", "InvalidArgument",
         "'NoncurrentDays' for NoncurrentVersionExpiration action must be a positive integer"),
        (ENABLED_ALL + "<AbortIncompleteMultipartUpload><DaysAfterInitiation>0"
         "</DaysAfterInitiation></AbortIncompleteMultipartUpload>", "InvalidArgument",
         "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive "
         "integer"),
        (ENABLED_ALL + "<Expiration><Date>2030-01-01T12:00:00Z</Date></Expiration>",
         "InvalidArgument", "'Date' must be at midnight GMT"),
        (ENABLED_ALL, "InvalidRequest", "At least one action needs to be specified in a rule"),
        ("<Filter/><Status>On</Status>" + EXPIRE_1, "MalformedXML", None),
        ("<Status>Enabled</Status>" + EXPIRE_1, "MalformedXML", None),
        ("<Prefix/><Filter/><Status>Enabled</Status>" + EXPIRE_1, "MalformedXML", None),
        ("<Filter><Prefix>a</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></Filter>"
         "<Status>Enabled</Status>" + EXPIRE_1, "MalformedXML", None),
        (ENABLED_ALL + "<Expiration><Days>1</Days><Date>2030-01-01T00:00:00Z</Date>"
         "</Expiration>", "MalformedXML", None),
        (ENABLED_ALL + "<Expiration><Days>one</Days></Expiration>", "MalformedXML", None),
        ("<Filter><And><Tag><Key>k</Key><Value>1</Value></Tag><Tag><Key>k</Key><Value>2</Value>"
         "</Tag></And></Filter><Status>Enabled</Status>" + EXPIRE_1, "InvalidRequest",
         "Duplicate Tag Keys are not allowed."),
        ("<Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status>"
         "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
         "</AbortIncompleteMultipartUpload>", "InvalidRequest",
         "AbortIncompleteMultipartUpload cannot be specified with Tags."),
        ("<Filter><ObjectSizeGreaterThan>10</ObjectSizeGreaterThan></Filter>"
         "<Status>Enabled</Status><AbortIncompleteMultipartUpload><DaysAfterInitiation>1"
         "</DaysAfterInitiation></AbortIncompleteMultipartUpload>", "InvalidRequest",
         "AbortIncompleteMultipartUpload cannot be specified with an object size filter."),
        (ENABLED_ALL + "<Transition><Days>1</Days><StorageClass>GLACIER</StorageClass>"
         "</Transition>", "NotImplemented", None),
        ("<ID>" + "x" * 256 + "</ID>" + ENABLED_ALL + EXPIRE_1, "InvalidArgument", None),
    ],
)
def test_invalid_lifecycle_rules(rule: str, code: str, message: str | None) -> None:
    with pytest.raises(S3Error) as caught:
        parse_lifecycle(_lifecycle(rule))
    assert caught.value.code == code
    if message is not None:
        assert caught.value.message == message


def test_lifecycle_rule_ids_must_be_unique() -> None:
    rule = "<ID>same</ID>" + ENABLED_ALL + EXPIRE_1
    with pytest.raises(S3Error) as caught:
        parse_lifecycle(_lifecycle(rule, rule))
    assert caught.value.code == "InvalidArgument"


# --- ACL and policy ---------------------------------------------------------------------------

OWNER = Owner("a" * 64, "squall-dev")


def test_owner_acl_golden() -> None:
    assert render_owner_acl(OWNER) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<AccessControlPolicy xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Owner><ID>'
        + b"a" * 64 + b"</ID><DisplayName>squall-dev</DisplayName></Owner><AccessControlList>"
        b'<Grant><Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        b'xsi:type="CanonicalUser"><ID>' + b"a" * 64 + b"</ID><DisplayName>squall-dev"
        b"</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant>"
        b"</AccessControlList></AccessControlPolicy>"
    )


# Parsing and enforcing ACLs: tests/unit/test_acl.py.


GOOD_POLICY = (b'{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow",'
               b'"Principal":"*","Action":["s3:GetObject"],"Resource":"arn:aws:s3:::b/*"}]}')


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"not json", "Policies must be valid JSON and the first byte must be '{'"),
        (b"[]", "Policies must be valid JSON and the first byte must be '{'"),
        (b'{"Version":"2012-10-17"}', "Missing required field Statement"),
        (b'{"Version":"1999","Statement":[]}', "The policy must contain a valid version string"),
        (GOOD_POLICY.replace(b'"Effect":"Allow",', b""), "Missing required field Effect"),
        (GOOD_POLICY.replace(b'"Allow"', b'"Maybe"'), "Invalid effect: Maybe"),
        (GOOD_POLICY.replace(b'"Principal":"*",', b""), "Missing required field Principal"),
        (GOOD_POLICY.replace(b'["s3:GetObject"]', b'"ec2:RunInstances"'),
         "Policy has invalid action"),
        (GOOD_POLICY.replace(b"arn:aws:s3:::b/*", b"arn:aws:s3:::other/*"),
         "Policy has invalid resource"),
        (GOOD_POLICY.replace(b'"Resource":"arn:aws:s3:::b/*"', b'"Resource":[]'),
         "Invalid value for field Resource"),
    ],
)
def test_invalid_policies_are_malformed_policy(document: bytes, message: str) -> None:
    with pytest.raises(S3Error) as caught:
        check_policy(document, "b")
    assert (caught.value.code, caught.value.message) == ("MalformedPolicy", message)


def test_a_well_shaped_policy_passes() -> None:
    check_policy(GOOD_POLICY, "b")
    check_policy(b'{"Statement":{"Effect":"Deny","Principal":{"AWS":["x"]},"NotAction":"s3:*",'
                 b'"Resource":["arn:aws:s3:::b","arn:aws:s3:::b*/k"],"Condition":{}}}', "b")


# --- Object Ownership, Block Public Access, policy status ------------------------------------

# The request body of AWS's PutBucketOwnershipControls example.
AWS_OWNERSHIP_EXAMPLE = b"""<OwnershipControls xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
    <Rule>
        <ObjectOwnership>BucketOwnerEnforced</ObjectOwnership>
    </Rule>
</OwnershipControls>"""


def test_ownership_controls_aws_example_and_golden_xml() -> None:
    assert parse_ownership_controls(AWS_OWNERSHIP_EXAMPLE) == "BucketOwnerEnforced"
    assert render_ownership_controls("ObjectWriter") == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<OwnershipControls xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Rule>'
        b"<ObjectOwnership>ObjectWriter</ObjectOwnership></Rule></OwnershipControls>"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"<OwnershipControls/>",
        b"<OwnershipControls><Rule><ObjectOwnership>Everyone</ObjectOwnership></Rule>"
        b"</OwnershipControls>",
        b"<OwnershipControls><Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule>"
        b"<Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule></OwnershipControls>",
        b"<Other><Rule><ObjectOwnership>ObjectWriter</ObjectOwnership></Rule></Other>",
    ],
    ids=["no-rule", "unknown-mode", "two-rules", "wrong-root"],
)
def test_malformed_ownership_controls(body: bytes) -> None:
    with pytest.raises(S3Error) as caught:
        parse_ownership_controls(body)
    assert caught.value.code == "MalformedXML"


# The request body of AWS's PutPublicAccessBlock example.
AWS_PUBLIC_ACCESS_BLOCK_EXAMPLE = b"""<PublicAccessBlockConfiguration
    xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
    <BlockPublicAcls>TRUE</BlockPublicAcls>
    <IgnorePublicAcls>TRUE</IgnorePublicAcls>
    <BlockPublicPolicy>TRUE</BlockPublicPolicy>
    <RestrictPublicBuckets>TRUE</RestrictPublicBuckets>
</PublicAccessBlockConfiguration>"""


def test_public_access_block_aws_example_and_golden_xml() -> None:
    flags = parse_public_access_block(AWS_PUBLIC_ACCESS_BLOCK_EXAMPLE)
    assert flags == dict.fromkeys(flags, True) and len(flags) == 4
    partial = parse_public_access_block(
        b"<PublicAccessBlockConfiguration><BlockPublicPolicy>true</BlockPublicPolicy>"
        b"</PublicAccessBlockConfiguration>")
    assert render_public_access_block(partial) == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<PublicAccessBlockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<BlockPublicAcls>false</BlockPublicAcls><IgnorePublicAcls>false</IgnorePublicAcls>"
        b"<BlockPublicPolicy>true</BlockPublicPolicy>"
        b"<RestrictPublicBuckets>false</RestrictPublicBuckets>"
        b"</PublicAccessBlockConfiguration>"
    )


@pytest.mark.parametrize(
    "body",
    [
        b"<PublicAccessBlockConfiguration><BlockPublicAcls>yes</BlockPublicAcls>"
        b"</PublicAccessBlockConfiguration>",
        b"<PublicAccessBlockConfiguration><BlockEverything>true</BlockEverything>"
        b"</PublicAccessBlockConfiguration>",
        b"<PublicAccessBlockConfiguration><BlockPublicAcls>true</BlockPublicAcls>"
        b"<BlockPublicAcls>false</BlockPublicAcls></PublicAccessBlockConfiguration>",
    ],
    ids=["not-boolean", "unknown-flag", "repeated-flag"],
)
def test_malformed_public_access_block(body: bytes) -> None:
    with pytest.raises(S3Error) as caught:
        parse_public_access_block(body)
    assert caught.value.code == "MalformedXML"


def _statement_policy(**statement: object) -> bytes:
    base = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
    return json.dumps({"Version": "2012-10-17", "Statement": [{**base, **statement}]}).encode()


@pytest.mark.parametrize(
    ("statement", "public"),
    [
        ({"Principal": "*"}, True),
        ({"Principal": {"AWS": ["arn:aws:iam::111122223333:root", "*"]}}, True),
        # Allow with NotPrincipal is MalformedPolicy (IAM: "not supported"); Deny is private.
        ({"NotPrincipal": {"AWS": "arn:aws:iam::111122223333:root"}, "Effect": "Deny"}, False),
        ({"Principal": {"AWS": "arn:aws:iam::111122223333:root"}}, False),
        ({"Principal": "*", "Effect": "Deny"}, False),
        ({"Principal": "*", "Condition": {"IpAddress": {"aws:SourceIp": "192.0.2.0/24"}}}, False),
        ({"Principal": "*", "Condition": {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}}, True),
        ({"Principal": "*", "Condition": {"StringEquals": {"aws:SourceAccount": "111122223333"}}},
         False),
        ({"Principal": "*", "Condition": {"StringLike": {"aws:SourceArn": "arn:aws:*"}}}, True),
        ({"Principal": "*", "Condition": {"StringEquals": {"aws:PrincipalOrgID": "o-*"}}}, True),
        ({"Principal": "*", "Condition": {"Bool": {"aws:SecureTransport": "true"}}}, True),
    ],
    ids=["star", "aws-star-in-list", "not-principal-deny", "named", "deny", "ip-range", "any-ip",
         "source-account", "arn-wildcard", "org-wildcard", "secure-transport"],
)
def test_policy_is_public(statement: dict[str, object], public: bool) -> None:
    document = _statement_policy(**statement)
    check_policy(document, "b")
    assert policy_is_public(document) is public


# --- ListBuckets paging, lifecycle rule IDs --------------------------------------------------


def _buckets(*names: str) -> list[BucketInfo]:
    return [BucketInfo(name=name, created_ms=0, owner_id="o") for name in names]


def test_list_buckets_page() -> None:
    buckets = _buckets("c", "a", "ab", "b")
    assert list_buckets_page(buckets, "", "", None) == (_buckets("a", "ab", "b", "c"), None)
    assert list_buckets_page(buckets, "", "", 2) == (_buckets("a", "ab"), "ab")
    assert list_buckets_page(buckets, "", "ab", 2) == (_buckets("b", "c"), None)
    assert list_buckets_page(buckets, "a", "", 1) == (_buckets("a"), "a")
    assert list_buckets_page(buckets, "a", "a", 1) == (_buckets("ab"), None)


@pytest.mark.parametrize("raw", ["0", "10001", "-5", "ten", ""])
def test_max_buckets_out_of_range(raw: str) -> None:
    with pytest.raises(S3Error) as caught:
        parse_max_buckets(raw)
    assert (caught.value.code, caught.value.status) == ("InvalidArgument", 400)


def test_lifecycle_rules_without_id_get_one_and_named_ones_keep_theirs() -> None:
    body = (b'<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            b"<Rule><Filter><Prefix>a/</Prefix></Filter><Status>Enabled</Status>"
            b"<Expiration><Days>1</Days></Expiration></Rule>"
            b"<Rule><ID>named</ID><Filter><Prefix>b/</Prefix></Filter><Status>Enabled</Status>"
            b"<Expiration><Days>2</Days></Expiration></Rule></LifecycleConfiguration>")
    stored, configuration = with_rule_ids(body, parse_lifecycle(body))
    generated, named = (rule.rule_id for rule in configuration.rules)
    assert generated and named == "named"
    # The stored document parses to the same rules, IDs included.
    assert parse_lifecycle(stored) == configuration
    assert stored.count(b"<ID>") == 2 and b"ns0:" not in stored
    # All named: the client's bytes are kept as they are.
    assert with_rule_ids(stored, configuration) == (stored, configuration)
