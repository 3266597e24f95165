"""POST Object authentication: the signed policy of a browser form, as pure functions.

Theory of operation
-------------------
A browser upload form (AWS: "Browser-based uploads using POST", "Creating a POST
policy") carries its credentials in form fields, not in headers. Its owner writes a
**policy**, a JSON document saying until when the form may be used and what every field
may hold, base64-encodes it and signs *that base64 text*:

* SigV4 (``x-amz-algorithm=AWS4-HMAC-SHA256``, ``x-amz-credential=AK/date/region/s3/
  aws4_request``, ``x-amz-date``, ``x-amz-signature``): the signature is
  ``hex(HMAC-SHA256(signing_key, policy))`` with the same derived key as any SigV4
  request (and the same cache, :func:`gateway.auth.sigv4.derive_signing_key`);
* SigV2 (``AWSAccessKeyId``, ``signature``): ``base64(HMAC-SHA1(secret, policy))``.

A form with none of those fields is anonymous. A valid signature proves only that the
owner wrote the policy; the policy then decides whether *this* form passes:

* ``expiration`` (ISO 8601, UTC): after it, ``AccessDenied`` "Policy expired.";
* ``conditions``: ``{"field": "value"}`` and ``["eq", "$field", "value"]`` (exact match),
  ``["starts-with", "$field", "prefix"]`` (an empty prefix allows anything; for
  Content-Type each entry of a comma-separated list must match), ``["content-length-range",
  min, max]`` (the file's size, checked while it streams). ``bucket`` is matched against
  the bucket of the URL. A field the form does not have is matched as the empty string.
* every field of the form must be named by some condition, except ``x-amz-signature``,
  ``file``, ``policy``, ``AWSAccessKeyId``, ``signature`` and ``x-ignore-*`` (and the
  bucket, which is always "sent"); else ``AccessDenied`` "Extra input fields: ...".

Field names and operators are case-insensitive, values are not. Variables such as
``${filename}`` are expanded by the caller before :func:`check_policy` runs, as AWS
expands them before validating.

Rules
-----
* No I/O, no clock: the caller passes ``now_seconds`` and the secret lookup.
* A policy that is not one (bad base64 or JSON, missing ``expiration`` or
  ``conditions``, an unknown operator, wrong arity or types) is ``InvalidPolicyDocument``
  (400); a policy that does not allow the form is ``AccessDenied`` (403); size violations
  are ``EntityTooSmall`` / ``EntityTooLarge`` (400). Messages follow AWS's.
* Signatures are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.auth.sigv4 import (
    ALGORITHM,
    AuthError,
    SecretLookup,
    _parse_credential,
    derive_signing_key,
    secret_for,
    sign_hex,
)
from storage.api import limits

# Fields a policy need not name (AWS: "except x-amz-signature, file, policy, and field
# names that have an x-ignore- prefix"; the SigV2 form adds AWSAccessKeyId and signature).
EXEMPT_FIELDS = frozenset({"x-amz-signature", "file", "policy", "awsaccesskeyid", "signature"})
IGNORED_FIELD_PREFIX = "x-ignore-"
SIGV4_FIELDS = ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature")
SIGV2_FIELDS = ("awsaccesskeyid", "signature")
EQ, STARTS_WITH, CONTENT_LENGTH_RANGE = "eq", "starts-with", "content-length-range"
_EXPIRATION = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?Z")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
_SIZE_BYTES_MAX_TEXT_DIGITS = 19  # a content-length-range bound given as a string


@dataclass(frozen=True, slots=True)
class Condition:
    operator: str  # EQ or STARTS_WITH
    field: str  # lower-cased, without '$'
    value: str
    as_written: str  # for messages: '["eq", "$key", "a"]'


@dataclass(frozen=True, slots=True)
class Policy:
    expiration: str
    expires_at_seconds: float
    conditions: tuple[Condition, ...]
    # The file's allowed size (content-length-range); None when the policy sets none.
    size_range_bytes: tuple[int, int] | None


# --- signature ---------------------------------------------------------------------------


def form_credentials_present(fields: Mapping[str, str]) -> bool:
    """Whether the form tries to authenticate at all (else it is anonymous)."""
    return any(name in fields for name in ("policy", *SIGV4_FIELDS, *SIGV2_FIELDS))


def verify_form_signature(
    fields: Mapping[str, str], lookup_secret: SecretLookup, region: str | None
) -> str:
    """The access key whose secret signed the form's policy; raises :class:`AuthError`.

    ``fields`` maps lower-cased field names to values. Call only when
    :func:`form_credentials_present` is true.
    """
    sigv4 = any(name in fields for name in SIGV4_FIELDS)
    required = ("policy", *(SIGV4_FIELDS if sigv4 else SIGV2_FIELDS))
    for name in required:
        if not fields.get(name):
            raise missing_field(_AWS_SPELLING.get(name, name))
    if sigv4:
        return _verify_sigv4(fields, lookup_secret, region)
    return _verify_sigv2(fields, lookup_secret)


_AWS_SPELLING = {"awsaccesskeyid": "AWSAccessKeyId", "signature": "Signature"}


def missing_field(name: str) -> AuthError:
    return AuthError(
        "InvalidArgument",
        f"Bucket POST must contain a field named '{name}'.  If it is specified, please "
        "check the order of the fields.",
        400,
        {"ArgumentName": name, "ArgumentValue": ""},
    )


def _verify_sigv4(fields: Mapping[str, str], lookup_secret: SecretLookup, region: str | None) -> str:
    algorithm = fields["x-amz-algorithm"]
    if algorithm != ALGORITHM:
        raise _invalid_field("x-amz-algorithm", algorithm,
                             f"Unsupported x-amz-algorithm; only {ALGORITHM} is supported.")
    credential = _parse_credential(
        fields["x-amz-credential"],
        lambda reason: _invalid_field("x-amz-credential", fields["x-amz-credential"], reason),
    )
    amz_date = fields["x-amz-date"]
    if not _AMZ_DATE.fullmatch(amz_date) or amz_date[:8] != credential.date_stamp:
        raise _invalid_field("x-amz-date", amz_date, "x-amz-date must be yyyyMMdd'T'HHmmss'Z' "
                             "on the date of x-amz-credential.")
    if region is not None and credential.region != region:
        raise _invalid_field("x-amz-credential", fields["x-amz-credential"],
                             f"the region '{credential.region}' is wrong; expecting '{region}'")
    secret = secret_for(credential.access_key, lookup_secret)
    key = derive_signing_key(secret, credential.date_stamp, credential.region)
    expected = sign_hex(key, fields["policy"])
    _compare(expected, fields["x-amz-signature"], credential.access_key, fields["policy"])
    return credential.access_key


def _verify_sigv2(fields: Mapping[str, str], lookup_secret: SecretLookup) -> str:
    access_key = fields["awsaccesskeyid"]
    secret = secret_for(access_key, lookup_secret)
    digest = hmac.new(secret.encode(), fields["policy"].encode(), hashlib.sha1).digest()
    _compare(base64.b64encode(digest).decode(), fields["signature"], access_key,
             fields["policy"])
    return access_key


def _compare(expected: str, provided: str, access_key: str, policy: str) -> None:
    if not hmac.compare_digest(expected.encode(), provided.encode()):
        raise AuthError(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you "
            "provided. Check your key and signing method.",
            403,
            {"AWSAccessKeyId": access_key, "StringToSign": policy,
             "SignatureProvided": provided},
        )


def _invalid_field(name: str, value: str, message: str) -> AuthError:
    return AuthError("InvalidArgument", message, 400,
                     {"ArgumentName": name, "ArgumentValue": value})


# --- the policy document -----------------------------------------------------------------


def invalid_policy(reason: str) -> AuthError:
    return AuthError("InvalidPolicyDocument", f"Invalid Policy: {reason}", 400)


def parse_policy(policy_base64: str) -> Policy:
    """The policy a form carries; :class:`AuthError` InvalidPolicyDocument if it is none."""
    try:
        text = base64.b64decode("".join(policy_base64.split()), validate=True)
        document = json.loads(text)
    except (binascii.Error, ValueError):  # JSONDecodeError and UnicodeDecodeError too
        raise invalid_policy("Invalid JSON.") from None
    if not isinstance(document, dict):
        raise invalid_policy("Invalid JSON.")
    if "expiration" not in document:
        raise invalid_policy("Policy missing expiration.")
    if "conditions" not in document:
        raise invalid_policy("Policy missing conditions.")
    expiration = document["expiration"]
    expires_at = _parse_expiration(expiration)
    raw_conditions = document["conditions"]
    if not isinstance(raw_conditions, list):
        raise invalid_policy("Invalid 'conditions' value: must be a list.")
    if len(raw_conditions) > limits.post_policy_conditions_max:
        raise invalid_policy(f"Too many conditions (at most {limits.post_policy_conditions_max}).")
    conditions: list[Condition] = []
    size_range: tuple[int, int] | None = None
    for raw in raw_conditions:
        parsed = _parse_condition(raw)
        if isinstance(parsed, Condition):
            conditions.append(parsed)
        else:
            size_range = parsed  # the last content-length-range wins
    return Policy(expiration, expires_at, tuple(conditions), size_range)


def _parse_expiration(value: object) -> float:
    match = _EXPIRATION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise invalid_policy(f"Invalid 'expiration' value: '{value}'")
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:  # month 13 ...
        raise invalid_policy(f"Invalid 'expiration' value: '{value}'") from None
    return moment.timestamp()


def _parse_condition(raw: object) -> Condition | tuple[int, int]:
    if isinstance(raw, dict):
        if len(raw) != 1:
            raise invalid_policy("Invalid Simple-Condition: Simple-Conditions must have "
                                 "exactly one property specified.")
        ((name, value),) = raw.items()
        if not isinstance(value, str):
            raise invalid_policy(f"Invalid Simple-Condition: value of '{name}' must be a string.")
        return Condition(EQ, name.lstrip("$").lower(), value, json.dumps(["eq", f"${name}", value]))
    if not isinstance(raw, list) or not raw or not isinstance(raw[0], str):
        raise invalid_policy(f"Invalid Condition: {json.dumps(raw)}")
    operator = raw[0].lower()
    if operator == CONTENT_LENGTH_RANGE:
        return _size_range(raw)
    if operator not in (EQ, STARTS_WITH):
        raise invalid_policy(f"Invalid Condition: unknown operator '{raw[0]}'.")
    if len(raw) != 3 or not all(isinstance(part, str) for part in raw[1:]):
        raise invalid_policy(f"Invalid '{raw[0]}' condition: expected [\"{operator}\", "
                             "\"$field\", \"value\"].")
    name, value = raw[1], raw[2]
    if not name.startswith("$") or len(name) < 2:
        raise invalid_policy(f"Invalid '{raw[0]}' condition: the field '{name}' must be "
                             "written '$name'.")
    return Condition(operator, name[1:].lower(), value, json.dumps(raw))


def _size_range(raw: list) -> tuple[int, int]:
    if len(raw) != 3:
        raise invalid_policy("Invalid content-length-range condition: expected "
                             "[\"content-length-range\", min, max].")
    bounds = [_size_bound(bound) for bound in raw[1:]]
    if None in bounds:
        raise invalid_policy("Invalid content-length-range condition: min and max must be "
                             "non-negative integers.")
    return bounds[0], bounds[1]  # type: ignore[return-value]


def _size_bound(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, str) and value.isdigit() and len(value) <= _SIZE_BYTES_MAX_TEXT_DIGITS:
        return int(value)
    return None


# --- checking a form against its policy --------------------------------------------------


def access_denied(reason: str) -> AuthError:
    return AuthError("AccessDenied", f"Invalid according to Policy: {reason}", 403)


def check_policy(
    policy: Policy, fields: Mapping[str, str], bucket: str, now_seconds: float
) -> None:
    """Raise AccessDenied unless the policy allows these fields (lower-cased names, the
    key already expanded) to be posted to ``bucket`` now. The file's size is checked
    separately, as it streams (:func:`check_size`)."""
    if now_seconds >= policy.expires_at_seconds:
        raise access_denied("Policy expired.")
    values = {**fields, "bucket": bucket}
    for condition in policy.conditions:
        if not _holds(condition, values.get(condition.field, "")):
            raise access_denied(f"Policy Condition failed: {condition.as_written}")
    named = {condition.field for condition in policy.conditions}
    extra = [name for name in values if name not in named and not _exempt(name)]
    if extra:
        raise access_denied(f"Extra input fields: {', '.join(extra)}")


def _holds(condition: Condition, value: str) -> bool:
    if condition.operator == EQ:
        return value == condition.value
    if condition.field == "content-type":
        # AWS: a Content-Type may be a comma-separated list; each entry must match.
        return all(part.strip().startswith(condition.value) for part in value.split(","))
    return value.startswith(condition.value)


def _exempt(name: str) -> bool:
    return name in EXEMPT_FIELDS or name.startswith(IGNORED_FIELD_PREFIX)


def check_size(policy: Policy | None, size_bytes: int, *, complete: bool) -> None:
    """The file's size against content-length-range (EntityTooLarge as soon as it is
    exceeded, EntityTooSmall once the file is ``complete``) and the single-PUT limit."""
    low, high = (0, limits.object_size_bytes_max)
    if policy is not None and policy.size_range_bytes is not None:
        low, high = policy.size_range_bytes[0], min(high, policy.size_range_bytes[1])
    if size_bytes > high:
        raise AuthError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed "
                        "size", 400, {"ProposedSize": str(size_bytes), "MaxSizeAllowed": str(high)})
    if complete and size_bytes < low:
        raise AuthError("EntityTooSmall", "Your proposed upload is smaller than the minimum "
                        "allowed size", 400,
                        {"ProposedSize": str(size_bytes), "MinSizeAllowed": str(low)})
