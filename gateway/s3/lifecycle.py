"""Put/Get/DeleteBucketLifecycleConfiguration (``?lifecycle``).

The XML is validated as AWS documents it (``LifecycleRule`` in the API reference) and
stored twice: as sent, under 'lifecycle', for GetBucketLifecycleConfiguration, and as
``api.LifecycleConfiguration`` under ``api.LIFECYCLE_RULES_CONFIG`` for the storage
sweeper (``storage/lifecycle.py``), which is what applies it.

The two documents are two writes. Put writes the XML first and Delete removes the rules
first, so an interrupted request can leave the sweeper on the previous rules (which the
client did approve) but never on rules GetBucketLifecycleConfiguration does not show.

Transitions (Transition, NoncurrentVersionTransition) are 501: Squall has one storage
class.

A rule sent without an ID gets one, as on AWS (GetBucketLifecycleConfiguration always
shows every rule's ID): the document is then stored re-serialised with the new IDs,
otherwise as sent.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, tostring

from starlette.responses import Response

from gateway.errors import S3Error, invalid_argument, malformed_xml, not_implemented
from gateway.s3.common import RequestContext
from gateway.s3.documents import delete_documents, read_document, stored_document
from gateway.xml import XML_DECLARATION, children, local_name, parse
from storage import api

LIFECYCLE_XML_CONFIG = "lifecycle"
RULE_ID_CHARS_MAX = 255
NEWER_NONCURRENT_VERSIONS_MAX = 100
_RULE_FIELDS = frozenset({
    "ID", "Status", "Filter", "Prefix", "Expiration", "NoncurrentVersionExpiration",
    "AbortIncompleteMultipartUpload", "Transition", "NoncurrentVersionTransition",
})  # fmt: skip
_FILTER_PREDICATES = frozenset(
    {"Prefix", "Tag", "And", "ObjectSizeGreaterThan", "ObjectSizeLessThan"}
)


def _invalid_request(message: str) -> S3Error:
    return S3Error("InvalidRequest", message, 400)


def _only_child(element: Element, name: str) -> Element | None:
    found = children(element, name)
    if len(found) > 1:
        raise malformed_xml()
    return found[0] if found else None


def _text(element: Element | None) -> str | None:
    return None if element is None else (element.text or "").strip()


def _integer(element: Element | None) -> int | None:
    text = _text(element)
    if text is None:
        return None
    if not text.lstrip("-").isdigit():
        raise malformed_xml()
    return int(text)


def _positive(value: int | None, field: str, action: str) -> int | None:
    if value is not None and value <= 0:
        raise invalid_argument(f"'{field}' for {action} action must be a positive integer")
    return value


def _check_fields(element: Element, allowed: frozenset[str]) -> None:
    if any(local_name(child) not in allowed for child in element):
        raise malformed_xml()


def _tag(element: Element) -> tuple[str, str]:
    _check_fields(element, frozenset({"Key", "Value"}))
    key, value = _text(_only_child(element, "Key")), _text(_only_child(element, "Value"))
    if key is None or value is None:
        raise malformed_xml()
    return key, value


def _tags(elements: list[Element]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for element in elements:
        key, value = _tag(element)
        if key in tags:
            raise _invalid_request("Duplicate Tag Keys are not allowed.")
        tags[key] = value
    return tags


def _filter(rule: Element) -> dict[str, object]:
    """The rule's filter as LifecycleRule fields (prefix, tags, size bounds)."""
    legacy_prefix = _only_child(rule, "Prefix")
    element = _only_child(rule, "Filter")
    if (legacy_prefix is None) == (element is None):
        raise malformed_xml()  # exactly one of Filter and (legacy) Prefix
    if element is None:
        return {"prefix": _text(legacy_prefix) or ""}
    _check_fields(element, _FILTER_PREDICATES)
    if len(element) > 1:
        raise malformed_xml()  # several predicates must be wrapped in And
    conjunction = _only_child(element, "And")
    if conjunction is not None:
        _check_fields(conjunction, _FILTER_PREDICATES - {"And"})
        source, tags = conjunction, _tags(children(conjunction, "Tag"))
    else:
        tag = _only_child(element, "Tag")
        source, tags = element, (dict([_tag(tag)]) if tag is not None else {})
    greater = _integer(_only_child(source, "ObjectSizeGreaterThan"))
    less = _integer(_only_child(source, "ObjectSizeLessThan"))
    if (greater is not None and greater < 0) or (less is not None and less <= 0):
        raise invalid_argument("Object size filters must be non-negative integers")
    if greater is not None and less is not None and greater >= less:
        raise invalid_argument(
            "ObjectSizeGreaterThan must be less than ObjectSizeLessThan"
        )
    return {
        "prefix": _text(_only_child(source, "Prefix")) or "",
        "tags": tags,
        "object_size_greater_than_bytes": greater,
        "object_size_less_than_bytes": less,
    }


def _date_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise malformed_xml() from error
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if (moment.hour, moment.minute, moment.second, moment.microsecond) != (0, 0, 0, 0):
        raise invalid_argument("'Date' must be at midnight GMT")
    return int(moment.timestamp() * 1000)


def _check_transition(element: Element) -> None:
    """A Transition / NoncurrentVersionTransition as AWS validates it: a StorageClass and
    exactly one time (Days >= 0 or a midnight Date; NoncurrentDays >= 0)."""
    _check_fields(element, frozenset({"Days", "Date", "NoncurrentDays", "StorageClass",
                                      "NewerNoncurrentVersions"}))
    if not _text(_only_child(element, "StorageClass")):
        raise malformed_xml()
    times = [_only_child(element, name) for name in ("Days", "Date", "NoncurrentDays")]
    if sum(found is not None for found in times) != 1:
        raise malformed_xml()
    days_element, date_element, noncurrent_element = times
    for days in (_integer(days_element), _integer(noncurrent_element)):
        if days is not None and days < 0:
            raise invalid_argument("'Days' for Transition action must be a non-negative integer")
    date = _text(date_element)
    if date is not None:
        _date_ms(date)


def _expiration(rule: Element) -> dict[str, object]:
    element = _only_child(rule, "Expiration")
    if element is None:
        return {}
    _check_fields(element, frozenset({"Days", "Date", "ExpiredObjectDeleteMarker"}))
    days = _integer(_only_child(element, "Days"))
    date = _text(_only_child(element, "Date"))
    marker = _text(_only_child(element, "ExpiredObjectDeleteMarker"))
    if sum(value is not None for value in (days, date, marker)) != 1:
        raise malformed_xml()  # exactly one of Days, Date, ExpiredObjectDeleteMarker
    if marker is not None and marker not in ("true", "false"):
        raise malformed_xml()
    return {
        "expiration_days": _positive(days, "Days", "Expiration"),
        "expiration_date_ms": None if date is None else _date_ms(date),
        "expired_object_delete_marker": marker == "true",
    }


def _noncurrent_expiration(rule: Element) -> dict[str, object]:
    element = _only_child(rule, "NoncurrentVersionExpiration")
    if element is None:
        return {}
    _check_fields(element, frozenset({"NoncurrentDays", "NewerNoncurrentVersions"}))
    days = _integer(_only_child(element, "NoncurrentDays"))
    newer = _integer(_only_child(element, "NewerNoncurrentVersions"))
    if days is None:
        raise malformed_xml()
    action = "NoncurrentVersionExpiration"
    if newer is not None and not 0 < newer <= NEWER_NONCURRENT_VERSIONS_MAX:
        raise invalid_argument(
            f"'NewerNoncurrentVersions' for {action} action must be a positive integer "
            f"up to {NEWER_NONCURRENT_VERSIONS_MAX}"
        )
    return {"noncurrent_days": _positive(days, "NoncurrentDays", action),
            "newer_noncurrent_versions": newer}


def _abort_incomplete_multipart(rule: Element) -> dict[str, object]:
    element = _only_child(rule, "AbortIncompleteMultipartUpload")
    if element is None:
        return {}
    _check_fields(element, frozenset({"DaysAfterInitiation"}))
    days = _integer(_only_child(element, "DaysAfterInitiation"))
    if days is None:
        raise malformed_xml()
    action = "AbortIncompleteMultipartUpload"
    return {"abort_incomplete_multipart_days": _positive(days, "DaysAfterInitiation", action)}


def _parse_rule(element: Element) -> api.LifecycleRule:
    _check_fields(element, _RULE_FIELDS)
    rule_id = _text(_only_child(element, "ID")) or ""
    if len(rule_id) > RULE_ID_CHARS_MAX:
        raise invalid_argument("ID length should not exceed allowed limit of 255")
    status = _text(_only_child(element, "Status"))
    if status not in ("Enabled", "Disabled"):
        raise malformed_xml()
    transitions = children(element, "Transition") + children(element, "NoncurrentVersionTransition")
    if transitions:
        # A malformed transition is the client's error (400) before it is an
        # unsupported one (501).
        for transition in transitions:
            _check_transition(transition)
        raise not_implemented("Lifecycle transitions (Squall has one storage class)")
    fields = {**_filter(element), **_expiration(element), **_noncurrent_expiration(element),
              **_abort_incomplete_multipart(element)}
    rule = api.LifecycleRule(rule_id=rule_id, enabled=status == "Enabled", **fields)  # type: ignore[arg-type]
    has_action = (
        rule.expiration_days is not None
        or rule.expiration_date_ms is not None
        or rule.expired_object_delete_marker
        or rule.noncurrent_days is not None
        or rule.abort_incomplete_multipart_days is not None
    )
    if not has_action and _only_child(element, "Expiration") is None:
        raise _invalid_request("At least one action needs to be specified in a rule")
    if rule.tags and rule.abort_incomplete_multipart_days is not None:
        raise _invalid_request("AbortIncompleteMultipartUpload cannot be specified with Tags.")
    has_size_filter = (rule.object_size_greater_than_bytes is not None
                       or rule.object_size_less_than_bytes is not None)
    if has_size_filter and rule.abort_incomplete_multipart_days is not None:
        # An upload has no size until it is completed: AWS refuses the combination.
        raise _invalid_request(
            "AbortIncompleteMultipartUpload cannot be specified with an object size filter."
        )
    if rule.tags and rule.expired_object_delete_marker:
        raise _invalid_request("ExpiredObjectDeleteMarker cannot be specified with Tags.")
    return rule


def parse_lifecycle(body: bytes) -> api.LifecycleConfiguration:
    """A LifecycleConfiguration body, validated as AWS does; S3Error when it is not."""
    root = parse(body)
    if local_name(root) != "LifecycleConfiguration":
        raise malformed_xml()
    _check_fields(root, frozenset({"Rule"}))
    elements = list(root)
    if not elements:
        raise malformed_xml()
    if len(elements) > api.limits.lifecycle_rules_max:
        raise invalid_argument(
            f"A lifecycle configuration has at most {api.limits.lifecycle_rules_max} rules"
        )
    rules = tuple(_parse_rule(element) for element in elements)
    named = [rule.rule_id for rule in rules if rule.rule_id]
    if len(named) != len(set(named)):
        raise invalid_argument("Rule ID must be unique. Found same ID for more than one rule")
    return api.LifecycleConfiguration(rules)


def new_rule_id() -> str:
    """An ID for a rule sent without one: unique, opaque, like AWS's (base64 text)."""
    return base64.b64encode(str(uuid.uuid4()).encode()).decode().rstrip("=")


def with_rule_ids(
    body: bytes, configuration: api.LifecycleConfiguration
) -> tuple[bytes, api.LifecycleConfiguration]:
    """``body`` and ``configuration`` with an ID given to every rule that has none (the
    two unchanged when all have one). ``body`` has passed ``parse_lifecycle``."""
    if all(rule.rule_id for rule in configuration.rules):
        return body, configuration
    root = parse(body)
    namespace = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else None
    rules = []
    for element, rule in zip(root, configuration.rules, strict=True):
        if not rule.rule_id:
            rule = dataclasses.replace(rule, rule_id=new_rule_id())
            identifier = Element(f"{{{namespace}}}ID" if namespace else "ID")
            identifier.text = rule.rule_id
            element.insert(0, identifier)
        rules.append(rule)
    try:
        text = tostring(root, encoding="unicode", default_namespace=namespace)
    except ValueError:  # elements outside the root's namespace: keep the prefixes
        text = tostring(root, encoding="unicode")
    return XML_DECLARATION + text.encode(), api.LifecycleConfiguration(tuple(rules))


async def put_bucket_lifecycle(ctx: RequestContext) -> Response:
    body = await read_document(ctx, api.limits.request_xml_body_bytes_max,
                               integrity_required=True)
    body, configuration = with_rule_ids(body, parse_lifecycle(body))
    await ctx.storage.put_bucket_config(ctx.bucket, LIFECYCLE_XML_CONFIG, body)
    await ctx.storage.put_bucket_config(
        ctx.bucket, api.LIFECYCLE_RULES_CONFIG, configuration.to_document()
    )
    return Response(status_code=200)


async def get_bucket_lifecycle(ctx: RequestContext) -> Response:
    return await stored_document(
        ctx, LIFECYCLE_XML_CONFIG, missing_code="NoSuchLifecycleConfiguration",
        missing_message="The lifecycle configuration does not exist",
    )  # fmt: skip


async def delete_bucket_lifecycle(ctx: RequestContext) -> Response:
    # The rules first (see the module doc).
    return await delete_documents(ctx, api.LIFECYCLE_RULES_CONFIG, LIFECYCLE_XML_CONFIG)
