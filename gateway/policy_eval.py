"""Bucket policies: parse a policy document once, decide requests against it. Pure, no I/O.

Rules
-----
* ``parse_policy(document, bucket)`` validates the IAM policy grammar as PutBucketPolicy
  must (``PolicyError`` carries the MalformedPolicy message) and returns a ``Policy``
  whose wildcards are compiled and whose condition values are parsed, so evaluating a
  request does no parsing. A stored policy was validated when it was put: parsing it
  again cannot fail unless this module became stricter.
* ``evaluate(policy, principal, action, resource, context)`` answers ``"allow"``,
  ``"deny"`` or ``"none"`` with AWS's policy evaluation logic: a statement applies when
  its Principal, Action, Resource and every Condition match; an applying Deny wins over
  any Allow (explicit deny); an applying Allow gives ``"allow"``; nothing applying gives
  ``"none"`` (an implicit deny: whoever calls decides what ownership or ACLs allow).
* ``request_actions(...)`` names the S3 actions (``s3:GetObject`` ...) a request needs,
  with their resources, from the operation the router named: the table is data.

Principals (Squall's scheme)
----------------------------
Every Squall identity is an account of its own; its account id is its access key. A
request signed with access key ``K`` (canonical id ``C``) is the principal

    "*"                                   everyone, anonymous requests included
    {"AWS": "*"}                          the same, as on AWS
    {"AWS": "K"}                          the account id alone, as AWS accepts it
    {"AWS": "arn:aws:iam::K:root"}        the account's root ARN
    {"AWS": "arn:aws:iam:::user/K"}       Ceph RGW's user ARN (what ceph/s3-tests write)
    {"CanonicalUser": "C"}                the canonical id ListBuckets' Owner shows

An anonymous request is only ``"*"`` / ``{"AWS": "*"}``. ``Service`` and ``Federated``
principals are accepted and never match: Squall has neither.

Condition keys
--------------
The caller builds the request context (``gateway/bucket_policy.py``); keys are compared
case-insensitively (AWS's rule), except the tag key after ``s3:ExistingObjectTag/`` and
``s3:RequestObjectTag/``. A value is a string, or a tuple of strings for a multi-valued
key (``s3:RequestObjectTagKeys``). A key the request does not have is absent: a positive
operator on it is false, a negated one (``StringNotEquals``, ``NotIpAddress`` ...) true,
``...IfExists`` true, ``Null`` tests exactly that, ``ForAllValues:`` true, ``ForAnyValue:``
false. Several values of one key in a policy are OR-ed (NOR for negated operators);
several keys, and several operators, are AND-ed.

Policy variables (``${aws:username}``, ``${*}``, ``${?}``, ``${$}``) are replaced in
Resource and in String/Arn condition values of ``"Version": "2012-10-17"`` policies; a
variable whose key the request lacks makes that value match nothing.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from storage.api import limits

Decision = Literal["allow", "deny", "none"]
ALLOW: Decision = "allow"
DENY: Decision = "deny"
NONE: Decision = "none"

POLICY_VERSIONS = ("2012-10-17", "2008-10-17")
VARIABLES_VERSION = "2012-10-17"  # only this version has policy variables
RESOURCE_ARN_PREFIX = "arn:aws:s3:::"
IAM_ARN_PREFIX = "arn:aws:iam::"
EVERYONE = "*"
PRINCIPAL_TYPES = frozenset({"AWS", "CanonicalUser", "Service", "Federated"})
_STATEMENT_FIELDS = frozenset({"Sid", "Effect", "Principal", "NotPrincipal", "Action",
                               "NotAction", "Resource", "NotResource", "Condition"})
_ACTION = re.compile(r"s3:[A-Za-z0-9*?]+|\*", re.IGNORECASE)
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9]{1,128}")
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_CONDITION_KEY = re.compile(r"(aws|s3):[A-Za-z0-9_:./*-]+(/.*)?", re.IGNORECASE)

Context = Mapping[str, str | tuple[str, ...]]


class PolicyError(Exception):
    """A document that is not a valid bucket policy; the message is MalformedPolicy's."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- principals ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principal:
    """Who makes a request, as the principal names of a policy that match it."""

    identities: frozenset[str]  # "AWS:<id or ARN>" and "CanonicalUser:<id>" entries
    anonymous: bool


ANONYMOUS = Principal(frozenset(), anonymous=True)


@functools.lru_cache(maxsize=limits.policy_principals_cached_max)
def principal_for_account(access_key: str, canonical_id: str) -> Principal:
    """The principal of a request signed with ``access_key`` (see the module docstring).

    Cached: every request to a bucket with a policy asks, and the answer never changes."""
    return Principal(
        frozenset({
            f"AWS:{access_key}",
            f"AWS:{IAM_ARN_PREFIX}{access_key}:root",
            f"AWS:{IAM_ARN_PREFIX}:user/{access_key}",
            f"CanonicalUser:{canonical_id}",
        }),
        anonymous=False,
    )  # fmt: skip


# --- wildcard patterns ------------------------------------------------------------------


def wildcard_regex(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """A compiled regular expression for an IAM wildcard pattern: ``*`` any run of
    characters ('/' included), ``?`` any one character, everything else literal."""
    parts = []
    for character in pattern:
        if character == "*":
            parts.append(".*")
        elif character == "?":
            parts.append(".")
        else:
            parts.append(re.escape(character))
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


@dataclass(frozen=True, slots=True)
class Pattern:
    """A wildcard pattern, compiled once; with policy variables, compiled per request."""

    text: str
    regex: re.Pattern[str] | None  # None: the text holds variables
    ignore_case: bool = False

    def matches(self, value: str, context: Context) -> bool:
        regex = self.regex
        if regex is None:
            regex = _substituted_regex(self.text, context, self.ignore_case)
            if regex is None:
                return False
        return regex.fullmatch(value) is not None


def _pattern(text: str, *, variables: bool, ignore_case: bool = False) -> Pattern:
    if variables and "${" in text:
        return Pattern(text, None, ignore_case)
    return Pattern(text, wildcard_regex(text, ignore_case=ignore_case), ignore_case)


@dataclass(frozen=True, slots=True)
class ActionPattern:
    """An Action entry: matched case-insensitively, a name without wildcards by a set
    lookup (most policies name actions in full), a pattern by its regex."""

    names: frozenset[str]  # lower-case full names
    patterns: tuple[re.Pattern[str], ...]

    def matches(self, action: str) -> bool:
        return action.lower() in self.names or any(
            pattern.fullmatch(action) for pattern in self.patterns)


def _action_pattern(actions: list[str]) -> ActionPattern:
    names = frozenset(a.lower() for a in actions if "*" not in a and "?" not in a)
    patterns = tuple(wildcard_regex(a, ignore_case=True) for a in actions
                     if "*" in a or "?" in a)
    return ActionPattern(names, patterns)


def _substituted_regex(text: str, context: Context, ignore_case: bool) -> re.Pattern[str] | None:
    """The pattern with its variables replaced (their values literal); None when one
    names a key the request does not have (the pattern then matches nothing)."""
    pieces: list[str] = []
    position = 0
    for variable in _VARIABLE.finditer(text):
        pieces.append(wildcard_regex(text[position:variable.start()]).pattern)
        name = variable.group(1).strip()
        if name in ("*", "?", "$"):
            pieces.append(re.escape(name))
        else:
            value = context.get(context_key(name))
            if not isinstance(value, str):
                return None
            pieces.append(re.escape(value))
        position = variable.end()
    pieces.append(wildcard_regex(text[position:]).pattern)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(pieces), flags)


def context_key(name: str) -> str:
    """A condition key as the context holds it: lower-case, except a tag key's own name."""
    prefix, slash, rest = name.partition("/")
    return prefix.lower() + slash + rest


# --- conditions ---------------------------------------------------------------------------


def _string_equals(value: str, expected: Any, context: Context) -> bool:
    return value == expected


def _string_equals_ignore_case(value: str, expected: Any, context: Context) -> bool:
    return value.casefold() == expected


def _pattern_matches(value: str, expected: Any, context: Context) -> bool:
    assert isinstance(expected, Pattern)
    return expected.matches(value, context)


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _epoch_seconds(value: str) -> float | None:
    """A date as AWS accepts it in conditions: ISO 8601, or seconds since the epoch."""
    number = _number(value)
    if number is not None:
        return number
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:  # a date without a zone is UTC, as AWS reads it
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _ordered(parse: Callable[[str], float | None],
             compare: Callable[[float, float], bool]) -> Callable[[str, Any, Context], bool]:
    def match(value: str, expected: Any, context: Context) -> bool:
        parsed = parse(value)
        return parsed is not None and compare(parsed, expected)
    return match


def _bool_equals(value: str, expected: Any, context: Context) -> bool:
    return value.lower() == expected


def _ip_in(value: str, expected: Any, context: Context) -> bool:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return address.version == expected.version and address in expected


def _parse_string(value: str) -> str:
    return value


def _parse_casefold(value: str) -> str:
    return value.casefold()


def _parse_number(value: str) -> float:
    number = _number(value)
    if number is None:
        raise PolicyError(f"Invalid numeric value in Condition: {value}")
    return number


def _parse_date(value: str) -> float:
    seconds = _epoch_seconds(value)
    if seconds is None:
        raise PolicyError(f"Invalid date value in Condition: {value}")
    return seconds


def _parse_bool(value: str) -> str:
    if value.lower() not in ("true", "false"):
        raise PolicyError(f"Invalid boolean value in Condition: {value}")
    return value.lower()


def _parse_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as error:
        raise PolicyError(f"Invalid IP address in Condition: {value}") from error


@dataclass(frozen=True, slots=True)
class Operator:
    """One condition operator: how its policy values parse and how one request value
    matches one policy value. ``negated``: the condition holds when NO value matches."""

    parse: Callable[[str], Any]
    match: Callable[[str, Any, Context], bool]
    negated: bool = False
    wildcards: bool = False  # values are wildcard patterns (with variables)


_EQ: Callable[[float, float], bool] = float.__eq__  # type: ignore[assignment]
_LT: Callable[[float, float], bool] = float.__lt__  # type: ignore[assignment]
_LE: Callable[[float, float], bool] = float.__le__  # type: ignore[assignment]
_GT: Callable[[float, float], bool] = float.__gt__  # type: ignore[assignment]
_GE: Callable[[float, float], bool] = float.__ge__  # type: ignore[assignment]

# AWS's condition operators (IAM JSON policy elements: Condition operators), without the
# IfExists suffix and the ForAllValues:/ForAnyValue: qualifiers, which apply to all but
# Null. Any other name is refused at PutBucketPolicy, as AWS refuses it.
OPERATORS: dict[str, Operator] = {
    "StringEquals": Operator(_parse_string, _string_equals),
    "StringNotEquals": Operator(_parse_string, _string_equals, negated=True),
    "StringEqualsIgnoreCase": Operator(_parse_casefold, _string_equals_ignore_case),
    "StringNotEqualsIgnoreCase": Operator(_parse_casefold, _string_equals_ignore_case,
                                          negated=True),
    "StringLike": Operator(_parse_string, _pattern_matches, wildcards=True),
    "StringNotLike": Operator(_parse_string, _pattern_matches, negated=True, wildcards=True),
    "NumericEquals": Operator(_parse_number, _ordered(_number, _EQ)),
    "NumericNotEquals": Operator(_parse_number, _ordered(_number, _EQ), negated=True),
    "NumericLessThan": Operator(_parse_number, _ordered(_number, _LT)),
    "NumericLessThanEquals": Operator(_parse_number, _ordered(_number, _LE)),
    "NumericGreaterThan": Operator(_parse_number, _ordered(_number, _GT)),
    "NumericGreaterThanEquals": Operator(_parse_number, _ordered(_number, _GE)),
    "DateEquals": Operator(_parse_date, _ordered(_epoch_seconds, _EQ)),
    "DateNotEquals": Operator(_parse_date, _ordered(_epoch_seconds, _EQ), negated=True),
    "DateLessThan": Operator(_parse_date, _ordered(_epoch_seconds, _LT)),
    "DateLessThanEquals": Operator(_parse_date, _ordered(_epoch_seconds, _LE)),
    "DateGreaterThan": Operator(_parse_date, _ordered(_epoch_seconds, _GT)),
    "DateGreaterThanEquals": Operator(_parse_date, _ordered(_epoch_seconds, _GE)),
    "Bool": Operator(_parse_bool, _bool_equals),
    "BinaryEquals": Operator(_parse_string, _string_equals),
    "IpAddress": Operator(_parse_network, _ip_in),
    "NotIpAddress": Operator(_parse_network, _ip_in, negated=True),
    # ARNs match with wildcards in each form (ArnEquals too, as AWS documents).
    "ArnEquals": Operator(_parse_string, _pattern_matches, wildcards=True),
    "ArnLike": Operator(_parse_string, _pattern_matches, wildcards=True),
    "ArnNotEquals": Operator(_parse_string, _pattern_matches, negated=True, wildcards=True),
    "ArnNotLike": Operator(_parse_string, _pattern_matches, negated=True, wildcards=True),
}
NULL_OPERATOR = "Null"
IF_EXISTS_SUFFIX = "IfExists"
SET_QUALIFIERS = ("ForAllValues", "ForAnyValue")


@dataclass(frozen=True, slots=True)
class Condition:
    """One (operator, key) pair of a statement's Condition, values parsed."""

    operator_name: str  # as written, for messages
    operator: Operator | None  # None: Null
    key: str  # context_key form
    values: tuple[Any, ...]
    if_exists: bool = False
    qualifier: str = ""  # '', 'ForAllValues' or 'ForAnyValue'

    def holds(self, context: Context) -> bool:
        present = context.get(self.key)
        if self.operator is None:  # Null: "true" holds when the key is absent
            absent = present is None or present == ()
            return any((value == "true") == absent for value in self.values)
        if present is None:
            if self.qualifier:
                return self.qualifier == "ForAllValues"
            return self.if_exists or self.operator.negated
        request_values = (present,) if isinstance(present, str) else present
        operator = self.operator

        def one_matches(value: str) -> bool:
            return any(operator.match(value, expected, context) for expected in self.values)

        if self.qualifier == "ForAllValues":
            return all(one_matches(value) != operator.negated for value in request_values)
        if operator.negated:
            if self.qualifier == "ForAnyValue":
                return any(not one_matches(value) for value in request_values)
            return not any(one_matches(value) for value in request_values)
        return any(one_matches(value) for value in request_values)


def _condition_values(raw: Any, operator_name: str) -> list[str]:
    values = raw if isinstance(raw, list) else [raw]
    if not values:
        raise PolicyError(f"Invalid Condition value for {operator_name}: empty list")
    texts = []
    for value in values:
        if isinstance(value, bool):
            texts.append("true" if value else "false")
        elif isinstance(value, (str, int, float)):
            texts.append(str(value))
        else:
            raise PolicyError(f"Invalid Condition value for {operator_name}")
    return texts


def _split_operator(name: str) -> tuple[str, str, bool]:
    """(qualifier, base operator, if_exists) of an operator name; PolicyError if unknown."""
    qualifier, colon, base = name.partition(":")
    if not colon:
        qualifier, base = "", name
    elif qualifier not in SET_QUALIFIERS:
        raise PolicyError(f"Invalid Condition type : {name}")
    if_exists = base.endswith(IF_EXISTS_SUFFIX) and base != IF_EXISTS_SUFFIX
    if if_exists:
        base = base[: -len(IF_EXISTS_SUFFIX)]
    if base == NULL_OPERATOR and not if_exists and not qualifier:
        return qualifier, base, if_exists
    if base not in OPERATORS:
        raise PolicyError(f"Invalid Condition type : {name}")
    return qualifier, base, if_exists


def _parse_conditions(block: Any, variables: bool) -> tuple[Condition, ...]:
    if not isinstance(block, dict):
        raise PolicyError("Invalid Condition: must be an object")
    conditions = []
    for operator_name, keys in block.items():
        qualifier, base, if_exists = _split_operator(operator_name)
        if not isinstance(keys, dict) or not keys:
            raise PolicyError(f"Invalid Condition block for {operator_name}")
        for key, raw_values in keys.items():
            if not isinstance(key, str) or not _CONDITION_KEY.fullmatch(key):
                raise PolicyError(f"Policy has an invalid condition key: {key}")
            texts = _condition_values(raw_values, operator_name)
            if base == NULL_OPERATOR:
                parsed: tuple[Any, ...] = tuple(_parse_bool(text) for text in texts)
                conditions.append(Condition(operator_name, None, context_key(key), parsed))
                continue
            operator = OPERATORS[base]
            if operator.wildcards:
                parsed = tuple(_pattern(text, variables=variables) for text in texts)
            elif variables and operator.parse is _parse_string and any(
                    "${" in text for text in texts):
                # A variable in an exact-match value: matched as a pattern of literals.
                parsed = tuple(_pattern(text.replace("*", "${*}").replace("?", "${?}"),
                                        variables=True) for text in texts)
                operator = Operator(operator.parse, _pattern_matches, operator.negated)
            else:
                parsed = tuple(operator.parse(text) for text in texts)
            conditions.append(Condition(operator_name, operator, context_key(key), parsed,
                                        if_exists, qualifier))
    return tuple(conditions)


# --- statements and policies ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Statement:
    deny: bool
    principals: frozenset[str] | None  # None: everyone ("*" or {"AWS": "*"})
    not_principal: bool
    actions: ActionPattern
    not_action: bool
    resources: tuple[Pattern, ...]
    not_resource: bool
    conditions: tuple[Condition, ...]

    def applies(self, principal: Principal, action: str, resource: str,
                context: Context) -> bool:
        named = self.principals is None or not principal.identities.isdisjoint(self.principals)
        if named == self.not_principal:
            return False
        if self.actions.matches(action) == self.not_action:
            return False
        if any(p.matches(resource, context) for p in self.resources) == self.not_resource:
            return False
        return all(condition.holds(context) for condition in self.conditions)


@dataclass(frozen=True, slots=True)
class Policy:
    statements: tuple[Statement, ...]
    # Every context key the policy names, in conditions or as ${variables}
    # (context_key form): the caller computes only these, and fetches what costs I/O
    # (s3:ExistingObjectTag/...) only for policies that ask.
    context_keys: frozenset[str]

    def names_key_prefix(self, prefix: str) -> bool:
        return any(key.startswith(prefix) for key in self.context_keys)


def _strings(value: Any, field: str) -> list[str]:
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(item, str) and item for item in values):
        raise PolicyError(f"Invalid value for field {field}")
    return values


def _one_of(statement: Mapping[str, Any], field: str) -> tuple[bool, Any]:
    """(whether it is the Not- form, the value) of Field / NotField: exactly one."""
    present = [name for name in (field, "Not" + field) if name in statement]
    if len(present) != 1:
        raise PolicyError(f"Missing required field {field}")
    return present[0] != field, statement[present[0]]


def _parse_principal(value: Any) -> frozenset[str] | None:
    if value == EVERYONE:
        return None
    if not isinstance(value, dict) or not value:
        raise PolicyError("Invalid principal in policy")
    identities = set()
    for kind, names in value.items():
        if kind not in PRINCIPAL_TYPES:
            raise PolicyError("Invalid principal in policy")
        for name in _strings(names, "Principal"):
            if kind == "AWS" and name == EVERYONE:
                return None
            if kind == "AWS" and not (name.startswith(IAM_ARN_PREFIX)
                                      or _ACCOUNT_ID.fullmatch(name)):
                raise PolicyError("Invalid principal in policy")
            identities.add(f"{kind}:{name}")
    return frozenset(identities)


def _parse_resource(resource: str, bucket: str, variables: bool) -> Pattern:
    if not resource.startswith(RESOURCE_ARN_PREFIX):
        raise PolicyError("Policy has invalid resource")
    bucket_pattern = resource[len(RESOURCE_ARN_PREFIX):].split("/", 1)[0]
    # The resource must name this bucket (a wildcard may): AWS refuses a policy about
    # another bucket.
    if not wildcard_regex(_VARIABLE.sub("*", bucket_pattern)).fullmatch(bucket):
        raise PolicyError("Policy has invalid resource")
    return _pattern(resource, variables=variables)


def _parse_statement(statement: Any, bucket: str, variables: bool) -> Statement:
    if not isinstance(statement, dict):
        raise PolicyError("Statement must be an object or a list of objects")
    unknown = sorted(set(statement) - _STATEMENT_FIELDS)
    if unknown:
        raise PolicyError(f"Unknown field {unknown[0]}")
    if "Sid" in statement and not isinstance(statement["Sid"], str):
        raise PolicyError("Invalid value for field Sid")
    effect = statement.get("Effect")
    if effect is None:
        raise PolicyError("Missing required field Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"Invalid effect: {effect}")
    not_principal, principal_value = _one_of(statement, "Principal")
    principals = _parse_principal(principal_value)
    if not_principal and effect == "Allow":
        # "Allow everyone but ..." is refused, as ceph/s3-tests checks against AWS.
        raise PolicyError("Invalid principal in policy: NotPrincipal with Allow")
    not_action, action_value = _one_of(statement, "Action")
    actions = _strings(action_value, "Action")
    for action in actions:
        if not _ACTION.fullmatch(action):
            raise PolicyError("Policy has invalid action")
    not_resource, resource_value = _one_of(statement, "Resource")
    resources = tuple(_parse_resource(resource, bucket, variables)
                      for resource in _strings(resource_value, "Resource"))
    conditions = _parse_conditions(statement.get("Condition", {}), variables)
    return Statement(effect == "Deny", principals, not_principal, _action_pattern(actions),
                     not_action, resources, not_resource, conditions)


def parse_policy(document: bytes, bucket: str) -> Policy:
    """The policy ``document`` as a ``Policy`` for ``bucket``; PolicyError if malformed."""
    try:
        policy = json.loads(document)
    except (UnicodeDecodeError, ValueError) as error:
        raise PolicyError("Policies must be valid JSON and the first byte must be '{'") from error
    if not isinstance(policy, dict):
        raise PolicyError("Policies must be valid JSON and the first byte must be '{'")
    unknown = sorted(set(policy) - {"Version", "Id", "Statement"})
    if unknown:
        raise PolicyError(f"Unknown field {unknown[0]}")
    version = policy.get("Version")
    if version is not None and version not in POLICY_VERSIONS:
        raise PolicyError("The policy must contain a valid version string")
    statements = policy.get("Statement")
    if statements is None or statements == []:
        raise PolicyError("Missing required field Statement")
    variables = version == VARIABLES_VERSION
    parsed = tuple(_parse_statement(statement, bucket, variables)
                   for statement in (statements if isinstance(statements, list)
                                     else [statements]))
    keys = {condition.key for statement in parsed for condition in statement.conditions}
    if variables:
        text = document.decode("utf-8", "replace")
        keys.update(context_key(match.group(1).strip()) for match in _VARIABLE.finditer(text))
    return Policy(parsed, frozenset(keys))


def evaluate(policy: Policy, principal: Principal, action: str, resource: str,
             context: Context) -> Decision:
    """AWS's evaluation of one bucket policy for one (action, resource): an applying
    Deny wins, else an applying Allow allows, else none applies."""
    allowed = False
    for statement in policy.statements:
        if statement.applies(principal, action, resource, context):
            if statement.deny:
                return DENY
            allowed = True
    return ALLOW if allowed else NONE


def combine(decisions: Iterable[Decision]) -> Decision:
    """One request's decision from its actions': any deny denies; all allowed allows."""
    result: Decision = ALLOW
    for decision in decisions:
        if decision == DENY:
            return DENY
        if decision == NONE:
            result = NONE
    return result


# --- operations -> actions ----------------------------------------------------------------

BUCKET_RESOURCE, OBJECT_RESOURCE = "bucket", "object"

# Every S3 operation the router names (and those other branches add) -> (the action it
# needs, the resource kind), from "Actions, resources, and condition keys for Amazon S3".
# Operations without a bucket (ListBuckets, CreateBucket of a new name) and Squall's own
# (admin, metrics, CORS preflights) are in NO_POLICY_OPERATIONS.
OPERATION_ACTIONS: dict[str, tuple[str, str]] = {
    "DeleteBucket": ("s3:DeleteBucket", BUCKET_RESOURCE),
    "HeadBucket": ("s3:ListBucket", BUCKET_RESOURCE),
    "GetBucketLocation": ("s3:GetBucketLocation", BUCKET_RESOURCE),
    "ListObjects": ("s3:ListBucket", BUCKET_RESOURCE),
    "ListObjectsV2": ("s3:ListBucket", BUCKET_RESOURCE),
    "ListObjectVersions": ("s3:ListBucketVersions", BUCKET_RESOURCE),
    # Checked per key by the handler (s3:DeleteObject / s3:DeleteObjectVersion).
    "DeleteObjects": ("s3:DeleteObject", BUCKET_RESOURCE),
    "PutObject": ("s3:PutObject", OBJECT_RESOURCE),
    "CopyObject": ("s3:PutObject", OBJECT_RESOURCE),
    "PostObject": ("s3:PutObject", OBJECT_RESOURCE),
    "GetObject": ("s3:GetObject", OBJECT_RESOURCE),
    "HeadObject": ("s3:GetObject", OBJECT_RESOURCE),
    "GetObjectAttributes": ("s3:GetObjectAttributes", OBJECT_RESOURCE),
    "DeleteObject": ("s3:DeleteObject", OBJECT_RESOURCE),
    "CreateMultipartUpload": ("s3:PutObject", OBJECT_RESOURCE),
    "UploadPart": ("s3:PutObject", OBJECT_RESOURCE),
    "UploadPartCopy": ("s3:PutObject", OBJECT_RESOURCE),
    "CompleteMultipartUpload": ("s3:PutObject", OBJECT_RESOURCE),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", OBJECT_RESOURCE),
    "ListParts": ("s3:ListMultipartUploadParts", OBJECT_RESOURCE),
    "ListMultipartUploads": ("s3:ListBucketMultipartUploads", BUCKET_RESOURCE),
    "PutBucketCors": ("s3:PutBucketCORS", BUCKET_RESOURCE),
    "GetBucketCors": ("s3:GetBucketCORS", BUCKET_RESOURCE),
    "DeleteBucketCors": ("s3:PutBucketCORS", BUCKET_RESOURCE),
    "PutBucketLifecycleConfiguration": ("s3:PutLifecycleConfiguration", BUCKET_RESOURCE),
    "GetBucketLifecycleConfiguration": ("s3:GetLifecycleConfiguration", BUCKET_RESOURCE),
    "DeleteBucketLifecycle": ("s3:PutLifecycleConfiguration", BUCKET_RESOURCE),
    "GetBucketAcl": ("s3:GetBucketAcl", BUCKET_RESOURCE),
    "PutBucketAcl": ("s3:PutBucketAcl", BUCKET_RESOURCE),
    "GetObjectAcl": ("s3:GetObjectAcl", OBJECT_RESOURCE),
    "PutObjectAcl": ("s3:PutObjectAcl", OBJECT_RESOURCE),
    "PutBucketPolicy": ("s3:PutBucketPolicy", BUCKET_RESOURCE),
    "GetBucketPolicy": ("s3:GetBucketPolicy", BUCKET_RESOURCE),
    "DeleteBucketPolicy": ("s3:DeleteBucketPolicy", BUCKET_RESOURCE),
    "GetBucketPolicyStatus": ("s3:GetBucketPolicyStatus", BUCKET_RESOURCE),
    "GetBucketEncryption": ("s3:GetEncryptionConfiguration", BUCKET_RESOURCE),
    "GetBucketRequestPayment": ("s3:GetBucketRequestPayment", BUCKET_RESOURCE),
    "PutBucketRequestPayment": ("s3:PutBucketRequestPayment", BUCKET_RESOURCE),
    "GetBucketAccelerateConfiguration": ("s3:GetAccelerateConfiguration", BUCKET_RESOURCE),
    "GetBucketLogging": ("s3:GetBucketLogging", BUCKET_RESOURCE),
    "PutBucketLogging": ("s3:PutBucketLogging", BUCKET_RESOURCE),
    "GetBucketWebsite": ("s3:GetBucketWebsite", BUCKET_RESOURCE),
    "DeleteBucketWebsite": ("s3:DeleteBucketWebsite", BUCKET_RESOURCE),
    "GetBucketReplication": ("s3:GetReplicationConfiguration", BUCKET_RESOURCE),
    "DeleteBucketReplication": ("s3:PutReplicationConfiguration", BUCKET_RESOURCE),
    "ListBucketAnalyticsConfigurations": ("s3:GetAnalyticsConfiguration", BUCKET_RESOURCE),
    "ListBucketInventoryConfigurations": ("s3:GetInventoryConfiguration", BUCKET_RESOURCE),
    "ListBucketMetricsConfigurations": ("s3:GetMetricsConfiguration", BUCKET_RESOURCE),
    "ListBucketIntelligentTieringConfigurations": (
        "s3:GetIntelligentTieringConfiguration", BUCKET_RESOURCE),
    "PutBucketEncryption": ("s3:PutEncryptionConfiguration", BUCKET_RESOURCE),
    "DeleteBucketEncryption": ("s3:PutEncryptionConfiguration", BUCKET_RESOURCE),
    "GetBucketOwnershipControls": ("s3:GetBucketOwnershipControls", BUCKET_RESOURCE),
    "PutBucketOwnershipControls": ("s3:PutBucketOwnershipControls", BUCKET_RESOURCE),
    "DeleteBucketOwnershipControls": ("s3:PutBucketOwnershipControls", BUCKET_RESOURCE),
    "GetPublicAccessBlock": ("s3:GetBucketPublicAccessBlock", BUCKET_RESOURCE),
    "PutPublicAccessBlock": ("s3:PutBucketPublicAccessBlock", BUCKET_RESOURCE),
    "DeletePublicAccessBlock": ("s3:PutBucketPublicAccessBlock", BUCKET_RESOURCE),
    "GetBucketVersioning": ("s3:GetBucketVersioning", BUCKET_RESOURCE),
    "PutBucketVersioning": ("s3:PutBucketVersioning", BUCKET_RESOURCE),
    "GetBucketTagging": ("s3:GetBucketTagging", BUCKET_RESOURCE),
    "PutBucketTagging": ("s3:PutBucketTagging", BUCKET_RESOURCE),
    "DeleteBucketTagging": ("s3:PutBucketTagging", BUCKET_RESOURCE),
    "GetObjectTagging": ("s3:GetObjectTagging", OBJECT_RESOURCE),
    "PutObjectTagging": ("s3:PutObjectTagging", OBJECT_RESOURCE),
    "DeleteObjectTagging": ("s3:DeleteObjectTagging", OBJECT_RESOURCE),
    "PutBucketNotificationConfiguration": ("s3:PutBucketNotification", BUCKET_RESOURCE),
    "GetBucketNotificationConfiguration": ("s3:GetBucketNotification", BUCKET_RESOURCE),
    # Object Lock (another branch adds the operations).
    "PutObjectLockConfiguration": ("s3:PutBucketObjectLockConfiguration", BUCKET_RESOURCE),
    "GetObjectLockConfiguration": ("s3:GetBucketObjectLockConfiguration", BUCKET_RESOURCE),
    "PutObjectRetention": ("s3:PutObjectRetention", OBJECT_RESOURCE),
    "GetObjectRetention": ("s3:GetObjectRetention", OBJECT_RESOURCE),
    "PutObjectLegalHold": ("s3:PutObjectLegalHold", OBJECT_RESOURCE),
    "GetObjectLegalHold": ("s3:GetObjectLegalHold", OBJECT_RESOURCE),
}
# With ?versionId=, these operations need the version's own action instead.
VERSION_ACTIONS: dict[str, str] = {
    "s3:GetObject": "s3:GetObjectVersion",
    "s3:DeleteObject": "s3:DeleteObjectVersion",
    "s3:GetObjectAcl": "s3:GetObjectVersionAcl",
    "s3:PutObjectAcl": "s3:PutObjectVersionAcl",
    "s3:GetObjectTagging": "s3:GetObjectVersionTagging",
    "s3:PutObjectTagging": "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging": "s3:DeleteObjectVersionTagging",
    "s3:GetObjectAttributes": "s3:GetObjectVersionAttributes",
}
NO_POLICY_OPERATIONS = frozenset({"ListBuckets", "CreateBucket", "PreflightCors",
                                  "SquallAdmin", "SquallMetrics"})
# The bucket owner may always run these, whatever the policy says: AWS's rule for the
# root user of the owning account, so that a policy can never lock its owner out.
OWNER_ALWAYS_OPERATIONS = frozenset({"GetBucketPolicy", "PutBucketPolicy",
                                     "DeleteBucketPolicy"})
COPY_OPERATIONS = frozenset({"CopyObject", "UploadPartCopy"})


def bucket_arn(bucket: str) -> str:
    return RESOURCE_ARN_PREFIX + bucket


def object_arn(bucket: str, key: str) -> str:
    return f"{RESOURCE_ARN_PREFIX}{bucket}/{key}"


def action_for(operation: str, version_id: str | None) -> tuple[str, str]:
    """(action, resource kind) of ``operation``; KeyError for one not in the table (a
    bug: tests/unit/test_policy_eval.py checks every routed operation is)."""
    action, kind = OPERATION_ACTIONS[operation]
    if version_id is not None:
        action = VERSION_ACTIONS.get(action, action)
    return action, kind


def resource_for(kind: str, bucket: str, key: str | None) -> str:
    if kind == OBJECT_RESOURCE and key is not None:
        return object_arn(bucket, key)
    return bucket_arn(bucket)


def parse_copy_source(value: str) -> tuple[str, str, str | None] | None:
    """(bucket, key, version id) of an x-amz-copy-source header; None if unreadable (the
    handler answers the client's error)."""
    from urllib.parse import unquote

    source, _, query = value.partition("?")
    source = unquote(source.lstrip("/"))
    bucket, slash, key = source.partition("/")
    if not slash or not bucket or not key:
        return None
    version_id = None
    for field in query.split("&"):
        name, _, field_value = field.partition("=")
        if name == "versionId":
            version_id = unquote(field_value)
    return bucket, key, version_id


def tag_context(prefix: str, tags: Mapping[str, str]) -> dict[str, str]:
    """``{prefix + key: value}`` for a tag set (``s3:ExistingObjectTag/`` ...)."""
    return {prefix + key: value for key, value in tags.items()}

