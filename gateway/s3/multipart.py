"""Multipart upload: Create, UploadPart, UploadPartCopy, Complete, Abort, ListParts,
ListMultipartUploads.

Each handler translates HTTP to storage calls and back. A part's body streams through
the same path as a PutObject body (hashed and staged piece by piece, Content-MD5 and
``x-amz-checksum-*`` verified by the same helpers); Complete makes the parts the new
object in storage without copying them.

Checksums (https://docs.aws.amazon.com/AmazonS3/latest/userguide/checking-object-integrity.html):
an upload created with ``x-amz-checksum-algorithm`` gets that checksum of every part
(computed here even when the client sent none) and an object checksum at Complete:

* COMPOSITE (the default for CRC32, CRC32C, SHA1, SHA256): base64 of the algorithm's
  digest of the concatenated binary part digests, suffixed ``-<part count>``. botocore
  skips its response validation for such a value (it is not plain base64).
* FULL_OBJECT (the only type for CRC64NVME; allowed for CRC32, CRC32C): the CRC of the
  whole body, obtained by combining the part CRCs (awscrt's ``combine_*``), no suffix.

SSE-C (``gateway/s3/encryption.py``): an upload created with a customer key keeps its
record; every UploadPart and UploadPartCopy must give that key (``check_upload_key``),
its parts are encrypted with it and their ETags are keyed; CompleteMultipartUpload needs
no key (given, it must be the upload's, and pre-commit functions then read the body).
An UploadPartCopy's source is read with the copy-source key.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from awscrt import checksums as crt_checksums
from starlette.responses import Response

from gateway import checksums as integrity
from gateway.checksums import ChecksumAlgorithm, Checksummer
from gateway.errors import S3Error, invalid_argument, malformed_xml
from gateway.s3.acl import requested_object_acl
from gateway.s3.common import (
    RequestContext,
    check_read_conditions,
    metadata_from_headers,
    precondition_failed,
)
from gateway.s3.encryption import body_etag, check_upload_key, new_key_record
from gateway.s3.listing import request_encoder
from gateway.s3.object_lock import requested_lock, wall_clock_ms
from gateway.s3.objects import (
    check_key,
    copy_source_version,
    expiration_headers,
    stage_body,
    stored_checksums,
    write_conditions,
)
from gateway.s3.tagging import requested_tags
from gateway.verdicts import verdict_headers
from gateway.xml import Node, bool_text, child_text, children, iso8601_ms, local_name, parse, render
from storage import api

COMPOSITE, FULL_OBJECT = "COMPOSITE", "FULL_OBJECT"
_FULL_OBJECT_ALGORITHMS = {
    ChecksumAlgorithm.CRC32: crt_checksums.combine_crc32,
    ChecksumAlgorithm.CRC32C: crt_checksums.combine_crc32c,
    ChecksumAlgorithm.CRC64NVME: crt_checksums.combine_crc64nvme,
}


def _xml_response(root: str, nodes: Sequence[Node], headers: dict[str, str] | None = None):
    return Response(render(root, nodes), media_type="application/xml", headers=headers)


def _upload_id(ctx: RequestContext) -> str:
    upload_id = ctx.query_value("uploadId")
    if not upload_id:
        raise api.NoSuchUpload("the uploadId parameter is empty")
    return upload_id


def _part_number(ctx: RequestContext) -> int:
    raw = ctx.query_value("partNumber")
    if raw is None or not raw.isdigit() or not 1 <= int(raw) <= api.limits.parts_per_upload_max:
        raise invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive", "partNumber", raw
        )
    return int(raw)


def _algorithm(name: str) -> ChecksumAlgorithm | None:
    return ChecksumAlgorithm(name) if name else None


def _checksum_headers(checksums: Mapping[str, str]) -> dict[str, str]:
    return {f"x-amz-checksum-{name.lower()}": value for name, value in checksums.items()}


# --- CreateMultipartUpload ------------------------------------------------------------------


def _requested_checksum(ctx: RequestContext) -> tuple[str, str]:
    """(algorithm, type) from x-amz-checksum-algorithm / x-amz-checksum-type."""
    raw_algorithm = ctx.headers.get("x-amz-checksum-algorithm", "").strip().upper()
    raw_type = ctx.headers.get("x-amz-checksum-type", "").strip().upper()
    if not raw_algorithm:
        if raw_type:
            raise S3Error("InvalidRequest", "The x-amz-checksum-type header can only be used "
                          "with the x-amz-checksum-algorithm header.", 400)
        return "", ""
    try:
        algorithm = ChecksumAlgorithm(raw_algorithm)
    except ValueError:
        raise invalid_argument("Checksum algorithm provided is unsupported.",
                               "x-amz-checksum-algorithm", raw_algorithm) from None
    default = FULL_OBJECT if algorithm is ChecksumAlgorithm.CRC64NVME else COMPOSITE
    checksum_type = raw_type or default
    allowed = {COMPOSITE, FULL_OBJECT}
    if algorithm is ChecksumAlgorithm.CRC64NVME:
        allowed = {FULL_OBJECT}
    elif algorithm not in _FULL_OBJECT_ALGORITHMS:
        allowed = {COMPOSITE}
    if checksum_type not in allowed:
        raise S3Error("InvalidRequest", f"The {checksum_type} checksum type cannot be used "
                      f"with the {algorithm.value.lower()} checksum algorithm.", 400)
    return algorithm.value, checksum_type


async def create_multipart_upload(ctx: RequestContext) -> Response:
    check_key(ctx.key)
    content_type, system, user = metadata_from_headers(ctx.headers)
    algorithm, checksum_type = _requested_checksum(ctx)
    tags = requested_tags(ctx)
    lock_mode, retain_until_ms, legal_hold = requested_lock(ctx.headers, wall_clock_ms())
    owner_id, acl = await requested_object_acl(ctx, await ctx.storage.get_bucket(ctx.bucket))
    # The tag set, the Object Lock state, the owner, the ACL and the SSE-C key's record
    # are kept with the upload and become the object's at Complete (storage refuses lock
    # state for a bucket without Object Lock).
    spec = api.PutSpec(etag="", content_type=content_type, system_metadata=system,
                       user_metadata=user, tags=tags, lock_mode=lock_mode,
                       lock_retain_until_ms=retain_until_ms, legal_hold=legal_hold,
                       owner_id=owner_id, acl=acl,
                       customer_key=new_key_record(ctx.customer_key))
    upload = await ctx.storage.create_multipart_upload(ctx.bucket, ctx.key, spec, algorithm,
                                                       checksum_type)
    ctx.answered_customer_key = upload.customer_key
    headers = {}
    if algorithm:
        headers = {"x-amz-checksum-algorithm": algorithm, "x-amz-checksum-type": checksum_type}
    return _xml_response("InitiateMultipartUploadResult", [
        ("Bucket", ctx.bucket), ("Key", ctx.key), ("UploadId", upload.upload_id),
    ], headers)  # fmt: skip


# --- UploadPart / UploadPartCopy ------------------------------------------------------------


async def _upload_info(ctx: RequestContext, upload_id: str) -> api.MultipartUploadInfo:
    """The upload (NoSuchUpload before any byte is staged)."""
    page = await ctx.storage.list_parts(ctx.bucket, ctx.key, upload_id, max_parts=0)
    return page.upload


def _part_algorithms(
    wanted: integrity.ChecksumRequest, upload: api.MultipartUploadInfo
) -> frozenset[ChecksumAlgorithm]:
    upload_algorithm = _algorithm(upload.checksum_algorithm)
    if upload_algorithm is None:
        return wanted.algorithms
    if wanted.algorithm is not None and wanted.algorithm is not upload_algorithm:
        raise S3Error("InvalidRequest", "Checksum Type mismatch occurred, expected checksum "
                      f"Type: {upload_algorithm.value.lower()}, actual checksum Type: "
                      f"{wanted.algorithm.value.lower()}", 400)
    return frozenset({upload_algorithm})


async def upload_part(ctx: RequestContext) -> Response:
    check_key(ctx.key)
    upload_id, part_number = _upload_id(ctx), _part_number(ctx)
    declared = ctx.body.declared_length()
    if declared > api.limits.part_size_bytes_max:
        raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed "
                      "object size.", 400, ProposedSize=str(declared),
                      MaxSizeAllowed=str(api.limits.part_size_bytes_max))
    wanted = integrity.parse_request(ctx.headers)
    upload = await _upload_info(ctx, upload_id)
    check_upload_key(upload.customer_key, ctx.customer_key)
    algorithms = _part_algorithms(wanted, upload)
    checksummer = Checksummer(algorithms)
    async with ctx.storage.upload_part(ctx.bucket, ctx.key, upload_id, part_number,
                                       ctx.customer_key) as part:
        await stage_body(part, ctx.body.pieces(), checksummer)
        integrity.verify(wanted, checksummer, ctx.body.trailers)
        checksums = stored_checksums(checksummer, algorithms)
        stored = checksums.get(upload.checksum_algorithm, "")
        info = await part.commit(
            body_etag(checksummer.md5_digest(), ctx.customer_key, upload.customer_key), stored)
    ctx.answered_customer_key = upload.customer_key
    return Response(status_code=200,
                    headers={"ETag": f'"{info.etag}"', **_checksum_headers(checksums)})


def parse_copy_range(value: str, size: int) -> tuple[int, int]:
    """[start, end_exclusive) of x-amz-copy-source-range 'bytes=first-last' (both
    inclusive and required, as AWS requires), within a source of ``size`` bytes."""
    unit, _, spec = value.strip().partition("=")
    first, dash, last = spec.partition("-")
    if unit != "bytes" or not dash or not first.isdigit() or not last.isdigit():
        raise invalid_argument("The x-amz-copy-source-range value must be of the form "
                               "bytes=first-last where first and last are the zero-based "
                               "offsets of the first and last bytes to copy",
                               "x-amz-copy-source-range", value)
    start, end = int(first), int(last)
    if start > end or end >= size:
        raise invalid_argument(f"Range specified is not valid for source object of size: "
                               f"{size}", "x-amz-copy-source-range", value)
    return start, end + 1


async def upload_part_copy(ctx: RequestContext) -> Response:
    check_key(ctx.key)
    upload_id, part_number = _upload_id(ctx), _part_number(ctx)
    source = await copy_source_version(ctx)
    if check_read_conditions(ctx.headers, source, prefix="x-amz-copy-source-if-") is not None:
        raise precondition_failed("x-amz-copy-source-If")
    start, end = 0, source.size_bytes
    if "x-amz-copy-source-range" in ctx.headers:
        start, end = parse_copy_range(ctx.headers["x-amz-copy-source-range"], source.size_bytes)
    if end - start > api.limits.part_size_bytes_max:
        raise S3Error("InvalidRequest", "The specified copy source is larger than the maximum "
                      f"allowable size for a copy source: {api.limits.part_size_bytes_max}",
                      400)
    upload = await _upload_info(ctx, upload_id)
    check_upload_key(upload.customer_key, ctx.customer_key)
    algorithm = _algorithm(upload.checksum_algorithm)
    algorithms = frozenset() if algorithm is None else frozenset({algorithm})
    checksummer = Checksummer(algorithms)
    async with ctx.storage.upload_part(ctx.bucket, ctx.key, upload_id, part_number,
                                       ctx.customer_key) as part:
        if end > start:
            await stage_body(part, ctx.storage.read_body(
                source, start, end, ctx.copy_source_customer_key), checksummer)
        checksums = stored_checksums(checksummer, algorithms)
        info = await part.commit(
            body_etag(checksummer.md5_digest(), ctx.customer_key, upload.customer_key),
            checksums.get(upload.checksum_algorithm, ""))
    ctx.answered_customer_key = upload.customer_key
    result: list[Node] = [("LastModified", iso8601_ms(info.last_modified_ms)),
                          ("ETag", f'"{info.etag}"')]
    result += [(f"Checksum{name}", value) for name, value in checksums.items()]
    headers = {}
    if source.s3_version_id != "null":
        headers["x-amz-copy-source-version-id"] = source.s3_version_id
    return _xml_response("CopyPartResult", result, headers)


# --- CompleteMultipartUpload ----------------------------------------------------------------


def parse_complete_request(body: bytes) -> list[api.CompletedPart]:
    """The <Part> list of a CompleteMultipartUpload body, in the order given."""
    root = parse(body)
    if local_name(root) != "CompleteMultipartUpload":
        raise malformed_xml()
    parts = []
    for element in children(root, "Part"):
        number, etag = child_text(element, "PartNumber"), child_text(element, "ETag")
        if number is None or etag is None or not number.strip().isdigit():
            raise malformed_xml()
        checksums = [child_text(element, f"Checksum{a.value}") for a in ChecksumAlgorithm]
        given = [value.strip() for value in checksums if value]
        parts.append(api.CompletedPart(int(number), etag.strip().strip('"'),
                                       given[0] if given else ""))
    if not parts or len(parts) > api.limits.parts_per_upload_max:
        raise malformed_xml()
    return parts


def multipart_etag(part_etags: Sequence[str]) -> str | None:
    """'<hex md5 of the concatenated binary part MD5s>-<count>'; None if one is not hex."""
    try:
        digests = b"".join(bytes.fromhex(etag) for etag in part_etags)
    except ValueError:
        return None
    return f"{hashlib.md5(digests, usedforsecurity=False).hexdigest()}-{len(part_etags)}"


def object_checksum(
    algorithm: ChecksumAlgorithm, checksum_type: str, parts: Sequence[api.PartInfo]
) -> str:
    """The object's checksum from its parts' (see the module doc)."""
    digests = [base64.b64decode(part.checksum) for part in parts]
    if checksum_type == COMPOSITE:
        hasher = integrity.new_hasher(algorithm)
        hasher.update(b"".join(digests))
        return f"{base64.b64encode(hasher.digest()).decode()}-{len(parts)}"
    combine = _FULL_OBJECT_ALGORITHMS[algorithm]
    value = int.from_bytes(digests[0], "big")
    for part, digest in zip(parts[1:], digests[1:], strict=True):
        value = combine(value, int.from_bytes(digest, "big"), part.size_bytes)
    return base64.b64encode(value.to_bytes(algorithm.digest_bytes, "big")).decode()


async def _all_parts(ctx: RequestContext, upload_id: str) -> api.ListPartsPage:
    """Every part of the upload (at most parts_per_upload_max, read in bounded pages)."""
    page = await ctx.storage.list_parts(ctx.bucket, ctx.key, upload_id)
    parts = list(page.parts)
    while page.is_truncated and page.next_part_number_marker is not None:
        page = await ctx.storage.list_parts(ctx.bucket, ctx.key, upload_id,
                                            part_number_marker=page.next_part_number_marker)
        parts += page.parts
    return api.ListPartsPage(page.upload, tuple(parts), False, None)


def _completion_checksums(
    ctx: RequestContext, named: list[api.CompletedPart], listing: api.ListPartsPage
) -> tuple[list[api.CompletedPart], dict[str, str]]:
    """The parts to check at the commit point (with the checksums the object checksum
    is made of) and the object's checksums ({} when the upload declared none)."""
    algorithm = _algorithm(listing.upload.checksum_algorithm)
    if algorithm is None:
        return [api.CompletedPart(p.part_number, p.etag) for p in named], {}
    stored = {part.part_number: part for part in listing.parts}
    if any(p.part_number not in stored for p in named):
        return named, {}  # storage answers InvalidPart at the commit point
    checked = [api.CompletedPart(p.part_number, p.etag, p.checksum
                                 or stored[p.part_number].checksum) for p in named]
    used = [stored[p.part_number] for p in named]
    value = object_checksum(algorithm, listing.upload.checksum_type, used)
    sent = ctx.headers.get(algorithm.header_name)
    if sent is not None and listing.upload.checksum_type == FULL_OBJECT and sent != value:
        raise S3Error("BadDigest", f"The {algorithm.value} you specified for the full object "
                      "did not match the calculated checksum.", 400)
    return checked, {algorithm.value: value}


async def complete_multipart_upload(ctx: RequestContext) -> Response:
    check_key(ctx.key)
    upload_id = _upload_id(ctx)
    body = await ctx.body.read_all(api.limits.request_xml_body_bytes_max)
    named = parse_complete_request(body)
    conditions = write_conditions(ctx)
    etag = multipart_etag([part.etag for part in named])
    try:
        listing = await _all_parts(ctx, upload_id)
    except api.NoSuchUpload:
        completed = await _completed_before(ctx, etag)
        if completed is None:
            raise
        return await _complete_response(ctx, completed, dict(completed.checksums),
                                        _checksum_type_of(completed.checksums))
    if etag is None:
        raise api.InvalidPart("a part ETag is not an MD5 in hex")
    if ctx.customer_key is not None:  # none is needed; given, it must be the upload's
        check_upload_key(listing.upload.customer_key, ctx.customer_key)
    checked, checksums = _completion_checksums(ctx, named, listing)
    try:
        version = await ctx.storage.complete_multipart_upload(
            ctx.bucket, ctx.key, upload_id, checked, etag, checksums, conditions,
            origin=ctx.event_origin(), customer_key=ctx.customer_key,
        )
    except api.CustomerKeyRequired as error:
        # Functions judge this upload and need its key to read it (storage's words).
        raise S3Error("InvalidRequest", str(error), 400) from error
    return await _complete_response(ctx, version, checksums, listing.upload.checksum_type)


async def _completed_before(ctx: RequestContext, etag: str | None) -> api.ObjectVersion | None:
    """The key's current version when it is what completing these parts made: AWS
    answers a repeated CompleteMultipartUpload (a client retrying after a lost answer)
    with success again. Squall keeps no record of a finished upload id, so the proof is
    the multipart ETag, which the named parts' MD5s determine; None when it differs."""
    if etag is None:
        return None
    try:
        version = await ctx.storage.get_version(ctx.bucket, ctx.key)
    except api.NoSuchKey:
        return None
    if version.is_delete_marker or not version.part_sizes or version.etag != etag:
        return None
    return version


def _checksum_type_of(checksums: Mapping[str, str]) -> str:
    # A COMPOSITE object checksum carries its part count ('-N'); FULL_OBJECT does not.
    return "COMPOSITE" if any("-" in value for value in checksums.values()) else "FULL_OBJECT"


async def _complete_response(
    ctx: RequestContext, version: api.ObjectVersion, checksums: Mapping[str, str],
    checksum_type: str,
) -> Response:
    # A pre-commit function may have routed the object: answer where it now lives.
    result: list[Node] = [
        ("Location", f"{ctx.request.base_url}{quote(version.bucket)}/{quote(version.key)}"),
        ("Bucket", version.bucket), ("Key", version.key), ("ETag", f'"{version.etag}"'),
    ]  # fmt: skip
    result += [(f"Checksum{name}", value) for name, value in checksums.items()]
    if checksums:
        result.append(("ChecksumType", checksum_type))
    headers = {}
    if version.s3_version_id != "null":
        headers["x-amz-version-id"] = version.s3_version_id
    if version.verdict is not None:
        headers.update(verdict_headers(version.verdict))
    headers.update(await expiration_headers(ctx, version))
    ctx.answered_customer_key = version.customer_key  # (not echoed: it says not SSE-S3)
    return _xml_response("CompleteMultipartUploadResult", result, headers)


# --- AbortMultipartUpload -------------------------------------------------------------------


async def abort_multipart_upload(ctx: RequestContext) -> Response:
    check_key(ctx.key)
    await ctx.storage.abort_multipart_upload(ctx.bucket, ctx.key, _upload_id(ctx))
    return Response(status_code=204)


# --- ListParts / ListMultipartUploads -------------------------------------------------------


def _bounded_integer(ctx: RequestContext, name: str, default: int, maximum: int) -> int:
    raw = ctx.query_value(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_argument(f"Provided {name} not an integer or within integer range",
                               name, raw) from None
    if value < 0:
        raise invalid_argument(f"Argument {name} must be an integer between 0 and "
                               "2147483647", name, raw)
    return min(value, maximum)


def _owner_nodes(ctx: RequestContext, upload: api.MultipartUploadInfo) -> list[Node]:
    """Initiator and Owner of an upload: who created it (uploads from before owners
    were recorded show the requester)."""
    owner = ctx.users.owner_by_id(upload.spec.owner_id) if upload.spec.owner_id else ctx.owner
    identity: list[Node] = [("ID", owner.id), ("DisplayName", owner.display_name)]
    return [("Initiator", identity), ("Owner", identity)]


async def list_parts(ctx: RequestContext) -> Response:
    check_key(ctx.key)
    upload_id = _upload_id(ctx)
    max_parts = _bounded_integer(ctx, "max-parts", api.limits.list_parts_max,
                                 api.limits.list_parts_max)
    marker = _bounded_integer(ctx, "part-number-marker", 0, api.limits.parts_per_upload_max)
    page = await ctx.storage.list_parts(ctx.bucket, ctx.key, upload_id,
                                        part_number_marker=marker, max_parts=max_parts)
    upload = page.upload
    next_marker = page.parts[-1].part_number if page.parts else None
    nodes: list[Node] = [
        ("Bucket", ctx.bucket), ("Key", ctx.key), ("UploadId", upload_id),
        ("PartNumberMarker", str(marker)),
        ("NextPartNumberMarker", str(next_marker) if next_marker is not None else None),
        ("MaxParts", str(max_parts)), ("IsTruncated", bool_text(page.is_truncated)),
    ]  # fmt: skip
    for part in page.parts:
        fields: list[Node] = [
            ("PartNumber", str(part.part_number)),
            ("LastModified", iso8601_ms(part.last_modified_ms)),
            ("ETag", f'"{part.etag}"'),
        ]
        if part.checksum:
            fields.append((f"Checksum{upload.checksum_algorithm}", part.checksum))
        fields.append(("Size", str(part.size_bytes)))
        nodes.append(("Part", fields))
    nodes += _owner_nodes(ctx, upload)
    nodes.append(("StorageClass", upload.spec.storage_class))
    if upload.checksum_algorithm:
        nodes += [("ChecksumAlgorithm", upload.checksum_algorithm),
                  ("ChecksumType", upload.checksum_type)]
    return _xml_response("ListPartsResult", nodes)


async def list_multipart_uploads(ctx: RequestContext) -> Response:
    encode = request_encoder(ctx)
    prefix = ctx.query_value("prefix") or ""
    delimiter = ctx.query_value("delimiter") or ""
    key_marker = ctx.query_value("key-marker") or ""
    upload_id_marker = ctx.query_value("upload-id-marker") or ""
    max_uploads = _bounded_integer(ctx, "max-uploads", api.limits.list_uploads_max,
                                   api.limits.list_uploads_max)
    page = await ctx.storage.list_multipart_uploads(
        ctx.bucket, prefix=prefix, delimiter=delimiter, key_marker=key_marker,
        upload_id_marker=upload_id_marker, max_uploads=max_uploads,
    )  # fmt: skip
    nodes: list[Node] = [
        ("Bucket", ctx.bucket),
        ("KeyMarker", encode(key_marker)),
        ("UploadIdMarker", upload_id_marker),
        ("NextKeyMarker", encode(page.next_key_marker) if page.next_key_marker else None),
        ("NextUploadIdMarker", page.next_upload_id_marker),
        ("Delimiter", encode(delimiter) if delimiter else None),
        ("Prefix", encode(prefix)),
        ("MaxUploads", str(max_uploads)),
        ("IsTruncated", bool_text(page.is_truncated)),
        ("EncodingType", ctx.query_value("encoding-type")),
    ]
    for upload in page.uploads:
        fields: list[Node] = [("Key", encode(upload.key)), ("UploadId", upload.upload_id)]
        fields += _owner_nodes(ctx, upload)
        fields += [("StorageClass", upload.spec.storage_class),
                   ("Initiated", iso8601_ms(upload.initiated_ms))]
        if upload.checksum_algorithm:
            fields += [("ChecksumAlgorithm", upload.checksum_algorithm),
                       ("ChecksumType", upload.checksum_type)]
        nodes.append(("Upload", fields))
    nodes += [("CommonPrefixes", [("Prefix", encode(p))]) for p in page.common_prefixes]
    return _xml_response("ListMultipartUploadsResult", nodes)
