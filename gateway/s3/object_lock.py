"""S3 Object Lock: Put/GetObjectLockConfiguration, Put/GetObjectRetention,
Put/GetObjectLegalHold, and the ``x-amz-object-lock-*`` headers of writes and reads.

Storage keeps the state and makes every decision that depends on it (``storage.engine
.locks``, at the commit point, against the server's wall clock): a bucket's Object Lock
flag and default retention live in its bucket record, a version's retention and legal
hold in its version record. This module parses and validates what clients send, and
renders what they read, as AWS does:

* Documents (MalformedXML for anything the schema does not allow: a wrong root, a mode
  other than GOVERNANCE/COMPLIANCE in upper case, ObjectLockEnabled other than Enabled,
  Days and Years together or neither, a non-integer period, a date that is not ISO
  8601); a period of 0 or less is InvalidArgument "Default retention period must be a
  positive integer value", more than 36500 days / 100 years InvalidArgument too (the
  ceph s3-tests expect InvalidRetentionPeriod there; AWS answers InvalidArgument).
* A retain-until date in the past is InvalidArgument "The retain until date must be in
  the future!". Headers: a mode without a date (or the reverse), an unknown mode, a
  legal hold other than ON/OFF, a date that is not ISO 8601: InvalidArgument.
* A request on a bucket without Object Lock: InvalidRequest "Bucket is missing Object
  Lock Configuration" (storage's ObjectLockNotEnabled); GetObjectLockConfiguration
  there: 404 ObjectLockConfigurationNotFoundError; GetObjectRetention of a version with
  no retention: 404 NoSuchObjectLockConfiguration.
* AWS requires integrity data (Content-MD5 or an x-amz-checksum-*) on the three Put
  operations and on an upload that sets a retention period (its own, or the bucket's
  default): InvalidRequest without it.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from xml.etree.ElementTree import Element

from starlette.responses import Response

from gateway import checksums as integrity
from gateway.errors import S3Error, malformed_xml
from gateway.s3.common import RequestContext, addressed_version, version_id_headers
from gateway.s3.documents import read_document
from gateway.xml import Node, child_text, children, iso8601_ms, local_name, parse, render
from storage import api

MODE_HEADER = "x-amz-object-lock-mode"
RETAIN_UNTIL_HEADER = "x-amz-object-lock-retain-until-date"
LEGAL_HOLD_HEADER = "x-amz-object-lock-legal-hold"
BYPASS_HEADER = "x-amz-bypass-governance-retention"
BUCKET_LOCK_HEADER = "x-amz-bucket-object-lock-enabled"
LEGAL_HOLD_STATUSES = ("ON", "OFF")


def wall_clock_ms() -> int:
    """The clock a retain-until date must be after (storage checks retention against the
    same wall clock)."""
    return time.time_ns() // 1_000_000


def _invalid_argument(message: str, name: str | None = None) -> S3Error:
    error = S3Error("InvalidArgument", message, 400)
    if name is not None:
        error.fields["ArgumentName"] = name
    return error


def _date_in_future(retain_until_ms: int, now_ms: int) -> int:
    if retain_until_ms <= now_ms:
        raise _invalid_argument("The retain until date must be in the future!")
    return retain_until_ms


def parse_timestamp_ms(text: str) -> int | None:
    """An ISO 8601 timestamp in ms since the epoch (no zone: UTC, as botocore writes a
    naive datetime); None when it is not one."""
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    try:
        return int(moment.timestamp() * 1000)
    except (OverflowError, OSError, ValueError):
        return None


def bypass_governance(headers: Mapping[str, str]) -> bool:
    return headers.get(BYPASS_HEADER, "").strip().lower() == "true"


# --- documents -------------------------------------------------------------------------


def _period(text: str | None, name: str, bound: int) -> int:
    assert text is not None
    value = text.strip()
    if not value.lstrip("-").isdigit() or len(value) > 12:
        raise malformed_xml()
    number = int(value)
    if number <= 0:
        raise _invalid_argument("Default retention period must be a positive integer value.",
                                name)
    if number > bound:
        raise _invalid_argument("Default retention period is too large.", name)
    return number


def _default_retention(rule: Element) -> api.DefaultRetention:
    retentions = children(rule, "DefaultRetention")
    if len(retentions) != 1:
        raise malformed_xml()
    retention = retentions[0]
    mode = child_text(retention, "Mode")
    days, years = child_text(retention, "Days"), child_text(retention, "Years")
    if mode not in api.OBJECT_LOCK_MODES or (days is None) == (years is None):
        raise malformed_xml()
    limits = api.limits
    if days is not None:
        return api.DefaultRetention(
            mode, days=_period(days, "Days", limits.object_lock_default_retention_days_max))
    return api.DefaultRetention(
        mode, years=_period(years, "Years", limits.object_lock_default_retention_years_max))


def parse_lock_configuration(body: bytes) -> api.DefaultRetention | None:
    """The default retention an ObjectLockConfiguration document sets (None: none)."""
    root = parse(body)
    if local_name(root) != "ObjectLockConfiguration":
        raise malformed_xml()
    if child_text(root, "ObjectLockEnabled") != "Enabled":
        raise malformed_xml()  # Object Lock can only be enabled, never disabled
    rules = children(root, "Rule")
    if len(rules) > 1:
        raise malformed_xml()
    return _default_retention(rules[0]) if rules else None


def render_lock_configuration(info: api.BucketInfo) -> bytes:
    nodes: list[Node] = [("ObjectLockEnabled", "Enabled")]
    retention = info.default_retention
    if retention is not None:
        period: Node = (("Days", str(retention.days)) if retention.days is not None
                        else ("Years", str(retention.years)))
        nodes.append(("Rule", [("DefaultRetention", [("Mode", retention.mode), period])]))
    return render("ObjectLockConfiguration", nodes)


def parse_retention(body: bytes, now_ms: int) -> tuple[str, int]:
    """(mode, retain-until ms) of a Retention document; ("", 0) for an empty one (which
    removes a retention, where that is allowed)."""
    root = parse(body)
    if local_name(root) != "Retention":
        raise malformed_xml()
    mode, date = child_text(root, "Mode"), child_text(root, "RetainUntilDate")
    if mode is None and date is None:
        return "", 0
    if mode not in api.OBJECT_LOCK_MODES or date is None:
        raise malformed_xml()
    retain_until_ms = parse_timestamp_ms(date)
    if retain_until_ms is None:
        raise malformed_xml()
    return mode, _date_in_future(retain_until_ms, now_ms)


def parse_legal_hold(body: bytes) -> bool:
    root = parse(body)
    status = child_text(root, "Status")
    if local_name(root) != "LegalHold" or status not in LEGAL_HOLD_STATUSES:
        raise malformed_xml()
    return status == "ON"


# --- headers of writes and reads -------------------------------------------------------


def requested_lock(headers: Mapping[str, str], now_ms: int) -> tuple[str, int, bool]:
    """(mode, retain-until ms, legal hold) that a write's x-amz-object-lock-* headers ask
    for (PutObject, CopyObject, CreateMultipartUpload); ("", 0, False) without them."""
    mode = headers.get(MODE_HEADER)
    date = headers.get(RETAIN_UNTIL_HEADER)
    hold = headers.get(LEGAL_HOLD_HEADER)
    legal_hold = False
    if hold is not None:
        if hold not in LEGAL_HOLD_STATUSES:
            raise _invalid_argument("Legal Hold must be either of 'ON' or 'OFF'",
                                    LEGAL_HOLD_HEADER)
        legal_hold = hold == "ON"
    if mode is None and date is None:
        return "", 0, legal_hold
    if mode is None or date is None:
        raise _invalid_argument("x-amz-object-lock-retain-until-date and "
                                "x-amz-object-lock-mode must both be supplied")
    if mode not in api.OBJECT_LOCK_MODES:
        raise _invalid_argument("Unknown wormMode directive.", MODE_HEADER)
    retain_until_ms = parse_timestamp_ms(date)
    if retain_until_ms is None:
        raise _invalid_argument("The retain until date must be provided in ISO 8601 format",
                                RETAIN_UNTIL_HEADER)
    return mode, _date_in_future(retain_until_ms, now_ms), legal_hold


def check_write_allowed(
    info: api.BucketInfo,
    mode: str,
    legal_hold: bool,
    headers: Mapping[str, str],
    *,
    uploads_body: bool,
) -> None:
    """Before staging a byte: lock headers need an Object Lock bucket, and an upload of a
    body (PutObject) with a retention period (its own or the bucket's default) needs
    integrity data."""
    if not info.object_lock_enabled:
        if mode or legal_hold:
            raise S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration", 400)
        return
    if not uploads_body or (not mode and info.default_retention is None):
        return
    wanted = integrity.parse_request(headers)
    if wanted.content_md5 is None and wanted.algorithm is None:
        raise S3Error("InvalidRequest", "Content-MD5 OR x-amz-checksum- HTTP header is required "
                      "for Put Object requests with Object Lock parameters", 400)


# --- handlers --------------------------------------------------------------------------


async def put_object_lock_configuration(ctx: RequestContext) -> Response:
    body = await read_document(ctx, api.limits.request_xml_body_bytes_max,
                               integrity_required=True)
    default_retention = parse_lock_configuration(body)
    await ctx.storage.put_object_lock_configuration(ctx.bucket, default_retention)
    return Response(status_code=200)


async def get_object_lock_configuration(ctx: RequestContext) -> Response:
    info = await ctx.storage.get_bucket(ctx.bucket)
    if not info.object_lock_enabled:
        raise S3Error("ObjectLockConfigurationNotFoundError",
                      "Object Lock configuration does not exist for this bucket", 404,
                      BucketName=ctx.bucket)
    return Response(render_lock_configuration(info), media_type="application/xml")


async def _locked_version(ctx: RequestContext) -> api.ObjectVersion:
    """The version a retention / legal hold request addresses, in an Object Lock bucket;
    a delete marker answers as AWS does (405 by id, 404 as the latest)."""
    info = await ctx.storage.get_bucket(ctx.bucket)
    if not info.object_lock_enabled:
        raise S3Error("InvalidRequest", "Bucket is missing Object Lock Configuration", 400)
    return await addressed_version(ctx)


async def put_object_retention(ctx: RequestContext) -> Response:
    body = await read_document(ctx, api.limits.request_xml_body_bytes_max,
                               integrity_required=True)
    retention = parse_retention(body, wall_clock_ms())
    version = await _locked_version(ctx)
    update = api.ObjectLockUpdate(retention=retention,
                                  bypass_governance=bypass_governance(ctx.headers))
    updated = await ctx.storage.update_object_lock(ctx.bucket, ctx.key, version.version_id,
                                                   update)
    return Response(status_code=200, headers=version_id_headers(updated))


async def get_object_retention(ctx: RequestContext) -> Response:
    version = await _locked_version(ctx)
    if not version.lock_mode:
        raise S3Error("NoSuchObjectLockConfiguration",
                      "The specified object does not have a ObjectLock configuration", 404)
    body = render("Retention", [("Mode", version.lock_mode),
                                ("RetainUntilDate", iso8601_ms(version.lock_retain_until_ms))])
    return Response(body, media_type="application/xml", headers=version_id_headers(version))


async def put_object_legal_hold(ctx: RequestContext) -> Response:
    body = await read_document(ctx, api.limits.request_xml_body_bytes_max,
                               integrity_required=True)
    legal_hold = parse_legal_hold(body)
    version = await _locked_version(ctx)
    updated = await ctx.storage.update_object_lock(
        ctx.bucket, ctx.key, version.version_id, api.ObjectLockUpdate(legal_hold=legal_hold))
    return Response(status_code=200, headers=version_id_headers(updated))


async def get_object_legal_hold(ctx: RequestContext) -> Response:
    version = await _locked_version(ctx)
    body = render("LegalHold", [("Status", "ON" if version.legal_hold else "OFF")])
    return Response(body, media_type="application/xml", headers=version_id_headers(version))
