"""gateway/policy_eval.py: the wildcard matcher, every condition operator, AWS's
evaluation logic, the principal scheme, validation messages and the operation table."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.app import HANDLERS, PREFLIGHT_OPERATION
from gateway.bucket_policy import RequestFacts, request_context
from gateway.policy_eval import (
    ALLOW,
    ANONYMOUS,
    DENY,
    NO_POLICY_OPERATIONS,
    NONE,
    OPERATION_ACTIONS,
    Policy,
    PolicyError,
    action_for,
    combine,
    evaluate,
    parse_copy_source,
    parse_policy,
    principal_for_account,
    wildcard_regex,
)
from gateway.router import METRICS_OPERATION, ROUTES

BUCKET = "b"
ROOT = principal_for_account("ROOTKEY", "c" * 64)
OTHER = principal_for_account("OTHERKEY", "d" * 64)


# --- the wildcard matcher ------------------------------------------------------------------


def naive_match(pattern: str, text: str) -> bool:
    """IAM wildcards by definition: '*' any run (even empty), '?' one character."""
    if not pattern:
        return not text
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        return any(naive_match(rest, text[split:]) for split in range(len(text) + 1))
    if not text:
        return False
    return (head == "?" or head == text[0]) and naive_match(rest, text[1:])


ALPHABET = st.sampled_from("ab/*?.$[")


@given(st.text(ALPHABET, max_size=8), st.text(st.sampled_from("ab/.$[*?"), max_size=10))
def test_wildcards_match_as_defined(pattern: str, text: str) -> None:
    assert (wildcard_regex(pattern).fullmatch(text) is not None) == naive_match(pattern, text)


@pytest.mark.parametrize(
    ("pattern", "text", "ignore_case", "expected"),
    [
        ("s3:Get*", "s3:GetObject", False, True),
        ("s3:get*", "s3:GetObject", True, True),
        ("s3:get*", "s3:GetObject", False, False),
        ("arn:aws:s3:::b/*", "arn:aws:s3:::b/dir/k", False, True),  # '*' crosses '/'
        ("arn:aws:s3:::b/?", "arn:aws:s3:::b/ab", False, False),
        ("a.c", "abc", False, False),  # regex characters are literal
        ("x\ny", "x\ny", False, True),
    ],
)
def test_wildcard_examples(pattern: str, text: str, ignore_case: bool, expected: bool) -> None:
    matched = wildcard_regex(pattern, ignore_case=ignore_case).fullmatch(text) is not None
    assert matched == expected


# --- condition operators (table-driven) ------------------------------------------------------


def one_condition(operator: str, key: str, values: Any) -> Policy:
    return policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                   "Resource": "arn:aws:s3:::b/*", "Condition": {operator: {key: values}}})


def policy(*statements: dict, version: str = "2012-10-17") -> Policy:
    return parse_policy(json.dumps({"Version": version, "Statement": list(statements)}).encode(),
                        BUCKET)


def holds(operator: str, key: str, values: Any, context: dict) -> bool:
    decision = evaluate(one_condition(operator, key, values), ROOT, "s3:GetObject",
                        "arn:aws:s3:::b/k", context)
    return decision == ALLOW


CONDITION_CASES = [
    # operator, key, policy values, request context, holds
    ("StringEquals", "aws:UserAgent", "ua", {"aws:useragent": "ua"}, True),
    ("StringEquals", "aws:UserAgent", "ua", {"aws:useragent": "UA"}, False),
    ("StringEquals", "aws:UserAgent", ["x", "ua"], {"aws:useragent": "ua"}, True),  # OR
    ("StringEquals", "aws:UserAgent", "ua", {}, False),  # absent: false
    ("StringNotEquals", "aws:UserAgent", "ua", {"aws:useragent": "other"}, True),
    ("StringNotEquals", "aws:UserAgent", ["x", "ua"], {"aws:useragent": "ua"}, False),  # NOR
    ("StringNotEquals", "aws:UserAgent", "ua", {}, True),  # absent: a negated one holds
    ("StringEqualsIgnoreCase", "aws:UserAgent", "UA", {"aws:useragent": "ua"}, True),
    ("StringNotEqualsIgnoreCase", "aws:UserAgent", "UA", {"aws:useragent": "ua"}, False),
    ("StringLike", "s3:prefix", "home/*", {"s3:prefix": "home/me/"}, True),
    ("StringLike", "s3:prefix", "home/?", {"s3:prefix": "home/ab"}, False),
    ("StringNotLike", "s3:prefix", "home/*", {"s3:prefix": "etc/"}, True),
    ("StringNotLike", "s3:prefix", "home/*", {"s3:prefix": "home/x"}, False),
    ("StringEqualsIfExists", "aws:Referer", "r", {}, True),
    ("StringEqualsIfExists", "aws:Referer", "r", {"aws:referer": "q"}, False),
    ("NumericEquals", "s3:max-keys", "10", {"s3:max-keys": "10"}, True),
    ("NumericNotEquals", "s3:max-keys", "10", {"s3:max-keys": "10"}, False),
    ("NumericLessThan", "s3:max-keys", 10, {"s3:max-keys": "9"}, True),
    ("NumericLessThan", "s3:max-keys", "10", {"s3:max-keys": "10"}, False),
    ("NumericLessThanEquals", "s3:max-keys", "10", {"s3:max-keys": "10"}, True),
    ("NumericGreaterThan", "s3:max-keys", "10", {"s3:max-keys": "11"}, True),
    ("NumericGreaterThanEquals", "s3:max-keys", "10", {"s3:max-keys": "9"}, False),
    ("NumericEquals", "s3:max-keys", "10", {"s3:max-keys": "ten"}, False),
    ("DateLessThan", "aws:CurrentTime", "2030-01-01T00:00:00Z",
     {"aws:currenttime": "2029-12-31T23:59:59Z"}, True),
    ("DateGreaterThan", "aws:CurrentTime", "2030-01-01T00:00:00Z",
     {"aws:currenttime": "2029-12-31T23:59:59Z"}, False),
    ("DateEquals", "aws:EpochTime", "2001-09-09T01:46:40Z", {"aws:epochtime": "1000000000"},
     True),
    ("DateNotEquals", "aws:EpochTime", "1000000000", {"aws:epochtime": "1000000001"}, True),
    ("DateLessThanEquals", "aws:CurrentTime", "2030-01-01", {"aws:currenttime":
                                                            "2030-01-01T00:00:00Z"}, True),
    ("DateGreaterThanEquals", "aws:EpochTime", "10", {"aws:epochtime": "9"}, False),
    ("Bool", "aws:SecureTransport", "false", {"aws:securetransport": "false"}, True),
    ("Bool", "aws:SecureTransport", False, {"aws:securetransport": "true"}, False),
    ("BoolIfExists", "aws:SecureTransport", "true", {}, True),
    ("BinaryEquals", "s3:x-amz-content-sha256", "QUJD", {"s3:x-amz-content-sha256": "QUJD"},
     True),
    ("IpAddress", "aws:SourceIp", "127.0.0.0/8", {"aws:sourceip": "127.0.0.1"}, True),
    ("IpAddress", "aws:SourceIp", ["10.0.0.0/8", "192.168.1.7"], {"aws:sourceip":
                                                                 "192.168.1.7"}, True),
    ("IpAddress", "aws:SourceIp", "10.0.0.0/8", {"aws:sourceip": "127.0.0.1"}, False),
    ("IpAddress", "aws:SourceIp", "::1/128", {"aws:sourceip": "::1"}, True),
    ("IpAddress", "aws:SourceIp", "::/0", {"aws:sourceip": "127.0.0.1"}, False),
    ("NotIpAddress", "aws:SourceIp", "10.0.0.0/8", {"aws:sourceip": "127.0.0.1"}, True),
    ("NotIpAddress", "aws:SourceIp", "127.0.0.0/8", {"aws:sourceip": "127.0.0.1"}, False),
    ("ArnLike", "aws:PrincipalArn", "arn:aws:iam::*:root",
     {"aws:principalarn": "arn:aws:iam::K:root"}, True),
    ("ArnEquals", "aws:PrincipalArn", "arn:aws:iam::K:root",
     {"aws:principalarn": "arn:aws:iam::K:root"}, True),
    ("ArnNotLike", "aws:PrincipalArn", "arn:aws:iam::*:root",
     {"aws:principalarn": "arn:aws:iam::K:root"}, False),
    ("ArnNotEquals", "aws:PrincipalArn", "arn:aws:iam::X:root", {}, True),
    ("Null", "s3:x-amz-server-side-encryption", "true", {}, True),
    ("Null", "s3:x-amz-server-side-encryption", "true",
     {"s3:x-amz-server-side-encryption": "AES256"}, False),
    ("Null", "s3:x-amz-server-side-encryption", "false",
     {"s3:x-amz-server-side-encryption": "AES256"}, True),
    # Multi-valued keys and the set operators.
    ("ForAllValues:StringEquals", "s3:RequestObjectTagKeys", ["a", "b"],
     {"s3:requestobjecttagkeys": ("a", "b")}, True),
    ("ForAllValues:StringEquals", "s3:RequestObjectTagKeys", ["a"],
     {"s3:requestobjecttagkeys": ("a", "b")}, False),
    ("ForAllValues:StringEquals", "s3:RequestObjectTagKeys", ["a"], {}, True),  # vacuous
    ("ForAnyValue:StringEquals", "s3:RequestObjectTagKeys", ["b"],
     {"s3:requestobjecttagkeys": ("a", "b")}, True),
    ("ForAnyValue:StringEquals", "s3:RequestObjectTagKeys", ["b"], {}, False),
    ("ForAllValues:StringNotEquals", "s3:RequestObjectTagKeys", ["secret"],
     {"s3:requestobjecttagkeys": ("a", "b")}, True),
    ("ForAllValues:StringNotEquals", "s3:RequestObjectTagKeys", ["secret"],
     {"s3:requestobjecttagkeys": ("a", "secret")}, False),
    ("ForAnyValue:StringNotLike", "s3:RequestObjectTagKeys", ["a*"],
     {"s3:requestobjecttagkeys": ("ab", "zz")}, True),
    # Tag keys keep their case; condition key names do not matter in case.
    ("StringEquals", "S3:ExistingObjectTag/Security", "public",
     {"s3:existingobjecttag/Security": "public"}, True),
    ("StringEquals", "s3:ExistingObjectTag/security", "public",
     {"s3:existingobjecttag/Security": "public"}, False),
]


@pytest.mark.parametrize(("operator", "key", "values", "context", "expected"), CONDITION_CASES)
def test_condition_operators(operator: str, key: str, values: Any, context: dict,
                             expected: bool) -> None:
    assert holds(operator, key, values, context) == expected


def test_every_operator_has_a_case() -> None:
    from gateway.policy_eval import OPERATORS

    named = {case[0].split(":")[-1].removesuffix("IfExists") for case in CONDITION_CASES}
    assert set(OPERATORS) | {"Null"} <= named


def test_several_keys_and_operators_are_all_required() -> None:
    both = policy({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                   "Resource": "arn:aws:s3:::b/*", "Condition": {
                       "StringEquals": {"aws:UserAgent": "ua", "aws:Referer": "r"},
                       "Bool": {"aws:SecureTransport": "true"}}})
    full = {"aws:useragent": "ua", "aws:referer": "r", "aws:securetransport": "true"}
    assert evaluate(both, ROOT, "s3:GetObject", "arn:aws:s3:::b/k", full) == ALLOW
    for missing in full:
        partial = {k: v for k, v in full.items() if k != missing}
        assert evaluate(both, ROOT, "s3:GetObject", "arn:aws:s3:::b/k", partial) == NONE


# --- evaluation logic ----------------------------------------------------------------------


def statement(effect: str, action: Any = "s3:GetObject", resource: Any = "arn:aws:s3:::b/*",
              principal: Any = "*", **extra: Any) -> dict:
    result = {"Effect": effect, "Action": action, "Resource": resource, **extra}
    if "NotPrincipal" not in extra:
        result["Principal"] = principal
    return result


def test_explicit_deny_wins_over_allow_in_any_order() -> None:
    allow, deny = statement("Allow"), statement("Deny")
    for ordered in ((allow, deny), (deny, allow)):
        assert evaluate(policy(*ordered), ROOT, "s3:GetObject", "arn:aws:s3:::b/k", {}) == DENY


def test_allow_and_none() -> None:
    allow = policy(statement("Allow"))
    assert evaluate(allow, ANONYMOUS, "s3:GetObject", "arn:aws:s3:::b/k", {}) == ALLOW
    assert evaluate(allow, ANONYMOUS, "s3:PutObject", "arn:aws:s3:::b/k", {}) == NONE
    assert evaluate(allow, ANONYMOUS, "s3:GetObject", "arn:aws:s3:::b", {}) == NONE


def test_actions_match_case_insensitively_with_wildcards() -> None:
    allow = policy(statement("Allow", action=["S3:get*"]))
    assert evaluate(allow, ROOT, "s3:GetObjectTagging", "arn:aws:s3:::b/k", {}) == ALLOW
    assert evaluate(policy(statement("Allow", action="*")), ROOT, "s3:DeleteObject",
                    "arn:aws:s3:::b/k", {}) == ALLOW


def test_not_action_and_not_resource() -> None:
    deny_others = policy({"Effect": "Deny", "Principal": "*", "NotAction": "s3:Get*",
                          "Resource": "arn:aws:s3:::b/*"})
    assert evaluate(deny_others, ROOT, "s3:PutObject", "arn:aws:s3:::b/k", {}) == DENY
    assert evaluate(deny_others, ROOT, "s3:GetObject", "arn:aws:s3:::b/k", {}) == NONE
    outside = policy({"Effect": "Deny", "Principal": "*", "Action": "s3:*",
                      "NotResource": "arn:aws:s3:::b/public/*"})
    assert evaluate(outside, ROOT, "s3:GetObject", "arn:aws:s3:::b/private/k", {}) == DENY
    assert evaluate(outside, ROOT, "s3:GetObject", "arn:aws:s3:::b/public/k", {}) == NONE


@pytest.mark.parametrize(
    ("principal", "who", "applies"),
    [
        ("*", ANONYMOUS, True),
        ({"AWS": "*"}, ANONYMOUS, True),
        ({"AWS": ["*"]}, ROOT, True),
        ({"AWS": "ROOTKEY"}, ROOT, True),
        ({"AWS": "arn:aws:iam::ROOTKEY:root"}, ROOT, True),
        ({"AWS": "arn:aws:iam:::user/ROOTKEY"}, ROOT, True),
        ({"CanonicalUser": "c" * 64}, ROOT, True),
        ({"AWS": "arn:aws:iam::ROOTKEY:root"}, OTHER, False),
        ({"AWS": "arn:aws:iam::ROOTKEY:root"}, ANONYMOUS, False),
        ({"AWS": "arn:aws:iam::*:root"}, ROOT, False),  # no wildcards in principals
        ({"Service": "logging.s3.amazonaws.com"}, ROOT, False),
    ],
)
def test_principal_scheme(principal: Any, who: Any, applies: bool) -> None:
    decision = evaluate(policy(statement("Allow", principal=principal)), who, "s3:GetObject",
                        "arn:aws:s3:::b/k", {})
    assert decision == (ALLOW if applies else NONE)


def test_not_principal_applies_to_everyone_else() -> None:
    deny = policy(statement("Deny", NotPrincipal={"AWS": "arn:aws:iam::ROOTKEY:root"}))
    assert evaluate(deny, ROOT, "s3:GetObject", "arn:aws:s3:::b/k", {}) == NONE
    assert evaluate(deny, OTHER, "s3:GetObject", "arn:aws:s3:::b/k", {}) == DENY
    assert evaluate(deny, ANONYMOUS, "s3:GetObject", "arn:aws:s3:::b/k", {}) == DENY


def test_policy_variables() -> None:
    home = policy(statement("Allow", resource="arn:aws:s3:::b/home/${aws:username}/*"))
    mine = {"aws:username": "ROOTKEY"}
    assert evaluate(home, ROOT, "s3:GetObject", "arn:aws:s3:::b/home/ROOTKEY/x", mine) == ALLOW
    assert evaluate(home, ROOT, "s3:GetObject", "arn:aws:s3:::b/home/OTHER/x", mine) == NONE
    assert evaluate(home, ANONYMOUS, "s3:GetObject", "arn:aws:s3:::b/home/x/y", {}) == NONE
    # A substituted value is literal: a user named '*' gets no wildcard.
    star = {"aws:username": "*"}
    assert evaluate(home, ROOT, "s3:GetObject", "arn:aws:s3:::b/home/ROOTKEY/x", star) == NONE
    # The 2008 grammar has no variables: the text is literal.
    old = policy(statement("Allow", resource="arn:aws:s3:::b/${aws:username}"),
                 version="2008-10-17")
    assert evaluate(old, ROOT, "s3:GetObject", "arn:aws:s3:::b/${aws:username}", mine) == ALLOW


def test_combine() -> None:
    assert combine([ALLOW, ALLOW]) == ALLOW
    assert combine([ALLOW, NONE]) == NONE
    assert combine([NONE, DENY, ALLOW]) == DENY


# --- validation (MalformedPolicy messages) ------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"Condition": {"StringSometimes": {"aws:Referer": "x"}}},
         "Invalid Condition type : StringSometimes"),
        ({"Condition": {"NullIfExists": {"aws:Referer": "true"}}},
         "Invalid Condition type : NullIfExists"),
        ({"Condition": {"ForSomeValues:StringEquals": {"aws:Referer": "x"}}},
         "Invalid Condition type : ForSomeValues:StringEquals"),
        ({"Condition": {"StringEquals": {"referer": "x"}}},
         "Policy has an invalid condition key: referer"),
        ({"Condition": {"IpAddress": {"aws:SourceIp": "300.1.1.1"}}},
         "Invalid IP address in Condition: 300.1.1.1"),
        ({"Condition": {"NumericEquals": {"s3:max-keys": "ten"}}},
         "Invalid numeric value in Condition: ten"),
        ({"Condition": {"DateLessThan": {"aws:CurrentTime": "soon"}}},
         "Invalid date value in Condition: soon"),
        ({"Condition": {"Bool": {"aws:SecureTransport": "maybe"}}},
         "Invalid boolean value in Condition: maybe"),
        ({"Condition": {"StringEquals": {"aws:Referer": []}}},
         "Invalid Condition value for StringEquals: empty list"),
        ({"Condition": []}, "Invalid Condition: must be an object"),
        ({"Principal": {"Robot": "x"}}, "Invalid principal in policy"),
        ({"Principal": {"AWS": "not an account"}}, "Invalid principal in policy"),
        ({"Action": "s3:Get Object"}, "Policy has invalid action"),
    ],
)
def test_malformed_policy_messages(change: dict, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        policy({**statement("Allow"), **change})
    assert caught.value.message == message


def test_not_principal_with_allow_is_refused() -> None:
    with pytest.raises(PolicyError):
        policy(statement("Allow", NotPrincipal={"AWS": "*"}))


def test_resources_must_name_the_bucket() -> None:
    policy(statement("Allow", resource=["arn:aws:s3:::*", "arn:aws:s3:::*/*", "arn:aws:s3:::b",
                                        "arn:aws:s3:::?/k"]))
    with pytest.raises(PolicyError):
        policy(statement("Allow", resource="arn:aws:s3:::other/*"))


# --- operations -> actions ----------------------------------------------------------------------


def test_every_routed_operation_has_an_action() -> None:
    operations = set(HANDLERS) | {route.operation for route in ROUTES} | {METRICS_OPERATION}
    unmapped = operations - set(OPERATION_ACTIONS) - NO_POLICY_OPERATIONS
    assert not unmapped
    assert PREFLIGHT_OPERATION in NO_POLICY_OPERATIONS


@pytest.mark.parametrize(
    ("operation", "version_id", "action"),
    [
        ("GetObject", None, "s3:GetObject"),
        ("GetObject", "v1", "s3:GetObjectVersion"),
        ("HeadObject", "v1", "s3:GetObjectVersion"),
        ("DeleteObject", "v1", "s3:DeleteObjectVersion"),
        ("ListObjectsV2", None, "s3:ListBucket"),
        ("ListObjectVersions", None, "s3:ListBucketVersions"),
        ("HeadBucket", None, "s3:ListBucket"),
        ("CompleteMultipartUpload", None, "s3:PutObject"),
        ("DeleteBucketCors", None, "s3:PutBucketCORS"),
        ("GetObjectTagging", "v1", "s3:GetObjectVersionTagging"),
    ],
)
def test_operation_actions(operation: str, version_id: str | None, action: str) -> None:
    assert action_for(operation, version_id)[0] == action


def test_copy_source_parsing() -> None:
    assert parse_copy_source("/src/a%20b?versionId=v%2B1") == ("src", "a b", "v+1")
    assert parse_copy_source("src/dir/k") == ("src", "dir/k", None)
    assert parse_copy_source("nokey") is None


# --- the request context ------------------------------------------------------------------------


def test_request_context_keys() -> None:
    facts = RequestFacts(
        operation="ListObjectsV2", bucket="b", key=None, principal=ROOT, access_key="ROOTKEY",
        auth=None, query={"prefix": ["home/"], "max-keys": ["5"], "versionId": ["v"]},
        headers={"referer": "r", "user-agent": "ua", "x-amz-acl": "private",
                 "x-amz-tagging": "a=1&b=2"},
        source_ip="127.0.0.1", secure_transport=False, now_seconds=1_000_000_000.5,
    )  # fmt: skip
    context = request_context(facts, "s3:ListBucket")
    assert context["aws:sourceip"] == "127.0.0.1"
    assert context["aws:securetransport"] == "false"
    assert context["aws:currenttime"] == "2001-09-09T01:46:40Z"
    assert context["aws:epochtime"] == "1000000000"
    assert context["aws:principaltype"] == "Account"
    assert context["aws:username"] == "ROOTKEY"
    assert context["aws:referer"] == "r" and context["aws:useragent"] == "ua"
    assert context["s3:prefix"] == "home/" and context["s3:max-keys"] == "5"
    assert "s3:delimiter" not in context
    assert context["s3:x-amz-acl"] == "private"
    assert context["s3:versionid"] == "v"
    assert context["s3:requestobjecttag/a"] == "1"
    assert context["s3:requestobjecttagkeys"] == ("a", "b")
    anonymous = request_context(RequestFacts(
        operation="GetObject", bucket="b", key="k", principal=ANONYMOUS, access_key=None,
        auth=None, query={}, headers={}, source_ip="::1", secure_transport=True,
        now_seconds=0.0), "s3:GetObject")
    assert anonymous["aws:principaltype"] == "Anonymous"
    assert "aws:username" not in anonymous and "s3:prefix" not in anonymous


def test_only_the_keys_a_policy_names_are_computed() -> None:
    facts = RequestFacts(
        operation="PutObject", bucket="b", key="k", principal=ROOT, access_key="ROOTKEY",
        auth=None, query={}, headers={"x-amz-tagging": "a=1", "referer": "r"},
        source_ip="127.0.0.1", secure_transport=False, now_seconds=0.0,
    )  # fmt: skip
    named = policy(statement("Allow", action="s3:PutObject", Condition={
        "StringEquals": {"s3:RequestObjectTag/a": "1"},
        "IpAddress": {"aws:SourceIp": "127.0.0.1"}}),
        statement("Allow", resource="arn:aws:s3:::b/${aws:username}"))
    assert named.context_keys == {"s3:requestobjecttag/a", "aws:sourceip", "aws:username"}
    context = request_context(facts, "s3:PutObject", named.context_keys)
    assert context == {"s3:requestobjecttag/a": "1", "aws:sourceip": "127.0.0.1",
                       "aws:username": "ROOTKEY"}
