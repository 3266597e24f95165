"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, CopyObject.

Each handler translates HTTP to storage calls and back, nothing more. Bodies stream:
a PUT is hashed and staged piece by piece as it arrives, a GET is sent chunk by chunk
from the store's memory map, and no handler holds a whole object.

SSE-C (``gateway/s3/encryption.py``): a write with a customer key stages through an
upload opened with it and commits a record of it (the ETag is then keyed, not the MD5
of the plaintext); a read checks the key against the version's record before anything
else about the object is answered, and streams through it.

Version ids in headers follow AWS: a write to a bucket that is not versioning-Enabled
answers no ``x-amz-version-id``; a GET/HEAD of a null version answers
``x-amz-version-id: null`` once the bucket has a versioning state (Enabled or
Suspended), and nothing in a bucket that never had one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from starlette.responses import Response

from gateway import authz
from gateway import checksums as integrity
from gateway.checksums import Checksummer
from gateway.errors import S3Error, error_for_storage, invalid_argument
from gateway.responses import BodyResponse, first_piece
from gateway.s3.acl import READ, check_canned_acl_name, requested_object_acl
from gateway.s3.as_of import requested_as_of_ms
from gateway.s3.common import (
    RequestContext,
    check_read_conditions,
    metadata_from_headers,
    object_headers,
    precondition_failed,
)
from gateway.s3.encryption import SSE_HEADER, body_etag, check_object_key, new_key_record
from gateway.s3.object_lock import (
    bypass_governance,
    check_write_allowed,
    requested_lock,
    wall_clock_ms,
)
from gateway.s3.tagging import requested_tags, tags_for_copy
from gateway.verdicts import verdict_headers
from gateway.xml import http_date, iso8601_ms, render
from storage import api


def check_key(key: str) -> None:
    if len(key.encode("utf-8")) > api.limits.key_bytes_max:
        raise S3Error(
            "KeyTooLongError",
            "Your key is too long",
            400,
            Size=str(len(key.encode("utf-8"))),
            MaxSizeAllowed=str(api.limits.key_bytes_max),
        )


# --- PUT -------------------------------------------------------------------------------


def write_conditions(ctx: RequestContext) -> api.WriteConditions | None:
    """If-Match / If-None-Match: * of a write (PutObject, CopyObject, Complete)."""
    if_match = ctx.headers.get("if-match")
    if_none_match = ctx.headers.get("if-none-match")
    if if_match is None and if_none_match is None:
        return None
    if if_none_match is not None and if_none_match.strip() != "*":
        raise S3Error("NotImplemented", "If-None-Match on PUT supports only '*'.", 501,
                      Header="If-None-Match")
    return api.WriteConditions(
        if_match=if_match.strip().strip('"') if if_match is not None else None,
        if_none_match_any=if_none_match is not None,
    )


def stored_checksums(
    checksummer: Checksummer, algorithms: frozenset[integrity.ChecksumAlgorithm]
) -> dict[str, str]:
    """Algorithm name -> base64 digest of what the checksummer saw, in name order."""
    return {algorithm.value: checksummer.b64(algorithm) for algorithm in sorted(
        algorithms, key=lambda a: a.value)}


async def stage_body(
    upload: api.Upload | api.PartUpload,
    pieces: AsyncIterator[bytes | memoryview],
    checksummer: Checksummer,
) -> None:
    """Hash each piece and stage it (PutObject, CopyObject, UploadPart, UploadPartCopy)."""
    async for piece in pieces:
        checksummer.update(piece)
        await upload.write(piece)



def written_headers(version: api.ObjectVersion, checksums: Mapping[str, str]) -> dict[str, str]:
    """The headers that answer a write of ``version`` (PutObject, POST Object): its ETag,
    its version id (not for a 'null' version), the checksums it was sent with, and the
    verdict of the functions that judged it."""
    headers = {"ETag": f'"{version.etag}"'}
    if version.s3_version_id != "null":
        headers["x-amz-version-id"] = version.s3_version_id
    for algorithm, value in checksums.items():
        headers[f"x-amz-checksum-{algorithm.lower()}"] = value
    if version.verdict is not None:
        headers.update(verdict_headers(version.verdict))
    return headers

async def put_object(ctx: RequestContext) -> Response:
    check_key(ctx.key)
    check_canned_acl_name(ctx.headers)
    content_type, system, user = metadata_from_headers(ctx.headers)
    declared = ctx.body.declared_length()
    if declared > api.limits.object_size_bytes_max:
        raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum allowed "
                      "object size.", 400, ProposedSize=str(declared),
                      MaxSizeAllowed=str(api.limits.object_size_bytes_max))
    conditions = write_conditions(ctx)
    tags = requested_tags(ctx)
    lock_mode, retain_until_ms, legal_hold = requested_lock(ctx.headers, wall_clock_ms())
    wanted = integrity.parse_request(ctx.headers)
    info = await ctx.storage.get_bucket(ctx.bucket)  # fail before staging any byte
    check_write_allowed(info, lock_mode, legal_hold, ctx.headers, uploads_body=True)
    owner_id, acl = await requested_object_acl(ctx, info)
    checksummer = Checksummer(wanted.algorithms)
    customer_key = ctx.customer_key
    key_record = new_key_record(customer_key)
    async with ctx.storage.open_upload(ctx.bucket, ctx.key, customer_key) as upload:
        await stage_body(upload, ctx.body.pieces(), checksummer)
        integrity.verify(wanted, checksummer, ctx.body.trailers)
        checksums = stored_checksums(checksummer, wanted.algorithms)
        spec = api.PutSpec(
            etag=body_etag(checksummer.md5_digest(), customer_key, key_record),
            content_type=content_type,
            system_metadata=system,
            user_metadata=user,
            checksums=checksums,
            tags=tags,
            owner_id=owner_id,
            acl=acl,
            lock_mode=lock_mode,
            lock_retain_until_ms=retain_until_ms,
            legal_hold=legal_hold,
            customer_key=key_record,
        )
        version = await upload.commit(spec, conditions, origin=ctx.event_origin())
    ctx.answered_customer_key = version.customer_key
    headers = written_headers(version, checksums)
    headers.update(await expiration_headers(ctx, version))
    return Response(status_code=200, headers=headers)


async def expiration_headers(ctx: RequestContext, version: api.ObjectVersion) -> dict[str, str]:
    """x-amz-expiration for a version that is (or was just written as) its key's
    current version; {} for an older one (noncurrent expiry is not told)."""
    if not version.is_latest:
        return {}
    config = ctx.config
    return await config.lifecycle_rules.expiration_headers(ctx.storage, version,
                                                           config.lifecycle_day_ms)


# --- GET / HEAD ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end_exclusive: int

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end_exclusive - 1}/{size}"


def parse_range(header: str, size: int) -> ByteRange | None:
    """The satisfiable range a Range header asks for; None to send the whole object.

    Syntax S3 does not serve (several ranges, other units, garbage) is ignored, as AWS
    ignores it. A well-formed range that no byte satisfies is 416 InvalidRange.
    """
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    first, last = first.strip(), last.strip()
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _invalid_range(size)
        return ByteRange(max(0, size - suffix), size)
    start = int(first)
    if last != "" and int(last) < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        raise _invalid_range(size)
    end = size - 1 if last == "" else min(int(last), size - 1)
    return ByteRange(start, end + 1)


def _invalid_range(size: int) -> S3Error:
    return S3Error(
        "InvalidRange",
        "The requested range is not satisfiable",
        416,
        headers={"Content-Range": f"bytes */{size}"},
        ActualObjectSize=str(size),
    )


# GET's response-* query parameters override these response headers (AWS).
_RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


async def readable_version(ctx: RequestContext, *, send_body: bool) -> api.ObjectVersion:
    """The version a GET/HEAD reads (now, by id, or as of a time); delete markers answer
    as S3 answers them. For a GET, a small body comes with it (``inline_body``)."""
    version_id = ctx.query_value("versionId")
    if version_id == "":
        raise invalid_argument("Version id cannot be the empty string", "versionId", "")
    as_of_ms = requested_as_of_ms(ctx)
    try:
        version = await ctx.storage.get_version(
            ctx.bucket, ctx.key, version_id=version_id, as_of_ms=as_of_ms,
            inline_body_bytes_max=api.limits.get_inline_body_bytes_max if send_body else 0,
        )  # fmt: skip
    except (api.NoSuchKey, api.NoSuchVersion) as error:
        raise await authz.missing_object_error(
            ctx, error_for_storage(error, bucket=ctx.bucket, key=ctx.key)) from error
    if not version.is_delete_marker:
        if not authz.owns_private_object(ctx, version):
            await authz.check_object(ctx, version)
        return version
    # Whoever may not list the bucket learns nothing from a delete marker either.
    marker_hidden = await authz.missing_object_error(ctx, S3Error("NoSuchKey", "", 404))
    if marker_hidden.status == 403:
        raise marker_hidden
    # A delete marker exists only in a bucket with a versioning state, where even a null
    # marker's id is shown.
    marker_headers = {"x-amz-delete-marker": "true", "x-amz-version-id": version.s3_version_id}
    if version_id is not None:
        marker_headers["Last-Modified"] = http_date(version.last_modified_ms)
        raise S3Error(
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
            405,
            headers=marker_headers,
            Method=ctx.request.method,
            ResourceType="DeleteMarker",
        )
    raise S3Error("NoSuchKey", "The specified key does not exist.", 404,
                  headers=marker_headers, Key=ctx.key)


async def bucket_has_versioning_state(ctx: RequestContext, version: api.ObjectVersion) -> bool:
    versioning = version.bucket_versioning  # read with the version, when the store says
    if versioning is None:
        versioning = (await ctx.storage.get_bucket(ctx.bucket)).versioning
    return versioning != ""


def _part_number(ctx: RequestContext, version: api.ObjectVersion) -> ByteRange | None:
    """The bytes of part ``partNumber``: a multipart object's part N, or part 1 (the whole
    object) of an object written in one piece."""
    raw = ctx.query_value("partNumber")
    if raw is None:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= api.limits.parts_per_upload_max:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive",
                               "partNumber", raw)
    part_sizes = version.part_sizes or (version.size_bytes,)
    number = int(raw)
    if number > len(part_sizes):
        raise S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable",
                      416, PartNumber=raw)
    start = sum(part_sizes[: number - 1])
    return ByteRange(start, start + part_sizes[number - 1])


async def _read_response(ctx: RequestContext, *, send_body: bool) -> Response:
    check_key(ctx.key)
    version = await readable_version(ctx, send_body=send_body)
    check_object_key(version.customer_key, ctx.customer_key)  # before anything is told
    ctx.answered_customer_key = version.customer_key
    checksum_mode = ctx.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED"
    headers = object_headers(version, checksum_mode=checksum_mode)
    if version.s3_version_id == "null" and await bucket_has_versioning_state(ctx, version):
        headers["x-amz-version-id"] = "null"
    if version.tags:
        headers["x-amz-tagging-count"] = str(len(version.tags))
    headers.update(await expiration_headers(ctx, version))
    outcome = check_read_conditions(ctx.headers, version)
    if outcome == 412:
        raise precondition_failed("If-Match" if "if-match" in ctx.headers
                                  else "If-Unmodified-Since")
    if outcome == 304:
        kept = ("ETag", "Last-Modified", "x-amz-version-id")
        return Response(status_code=304, headers={k: headers[k] for k in kept if k in headers})
    for parameter, values in ctx.query.items():  # a short query, looked up in the table
        header = _RESPONSE_OVERRIDES.get(parameter)
        if header is not None and values:
            headers[header] = values[0]
    size = version.size_bytes
    byte_range = _part_number(ctx, version)
    if byte_range is not None:
        headers["x-amz-mp-parts-count"] = str(len(version.part_sizes) or 1)
    elif "range" in ctx.headers:
        byte_range = parse_range(ctx.headers["range"], size)
    status = 200
    start, end = 0, size
    if byte_range is not None:
        status, start, end = 206, byte_range.start, byte_range.end_exclusive
        headers["Content-Range"] = byte_range.content_range(size)
        if end - start != size:  # a whole-object checksum does not describe a part of it
            for name in [h for h in headers if h.startswith("x-amz-checksum-")]:
                del headers[name]
    headers["Content-Length"] = str(end - start)
    if not send_body or end == start:
        return Response(status_code=status, headers=headers)
    body = version.inline_body
    if body is not None:
        # Read with the version, in its snapshot: already bytes, one message to send.
        return Response(body if end - start == len(body) else body[start:end],
                        status_code=status, headers=headers)
    chunks = ctx.storage.read_body(version, start, end, ctx.customer_key)
    first = await first_piece(chunks)  # a refused stream is an error response, not a 200
    return BodyResponse(chunks, status_code=status, headers=headers, first=first)


async def get_object(ctx: RequestContext) -> Response:
    return await _read_response(ctx, send_body=True)


async def head_object(ctx: RequestContext) -> Response:
    return await _read_response(ctx, send_body=False)


# --- DELETE ----------------------------------------------------------------------------


async def delete_object(ctx: RequestContext) -> Response:
    check_key(ctx.key)
    version_id = ctx.query_value("versionId")
    result = await ctx.storage.delete_object(ctx.bucket, ctx.key, version_id=version_id,
                                             origin=ctx.event_origin(),
                                             bypass_governance=bypass_governance(ctx.headers))
    headers = {}
    if result.delete_marker:
        headers["x-amz-delete-marker"] = "true"
    if result.s3_version_id is not None and (result.delete_marker or version_id is not None):
        headers["x-amz-version-id"] = result.s3_version_id
    return Response(status_code=204, headers=headers)


# --- COPY ------------------------------------------------------------------------------


def parse_copy_source(value: str) -> tuple[str, str, str | None]:
    """(bucket, key, version id) from x-amz-copy-source: '[/]bucket/key[?versionId=v]'."""
    path, _, query = value.partition("?")
    version_id = None
    if query:
        name, _, version_value = query.partition("=")
        if name != "versionId":
            raise invalid_argument("Unsupported copy source parameter.", "x-amz-copy-source",
                                   value)
        version_id = unquote(version_value)
    path = unquote(path).lstrip("/")
    bucket, _, key = path.partition("/")
    if not bucket or not key:
        raise invalid_argument("Invalid copy source object key", "x-amz-copy-source", value)
    return bucket, key, version_id


async def copy_source_version(ctx: RequestContext) -> api.ObjectVersion:
    """The version x-amz-copy-source names (CopyObject, UploadPartCopy)."""
    bucket, key, version_id = parse_copy_source(ctx.headers["x-amz-copy-source"])
    check_key(key)
    try:
        version = await ctx.storage.get_version(bucket, key, version_id=version_id)
    except api.NoSuchKey as error:
        raise S3Error("NoSuchKey", "The specified key does not exist.", 404, Key=key) from error
    if version.is_delete_marker:
        if version_id is not None:
            raise S3Error("InvalidRequest", "The source of a copy request may not "
                          "specifically refer to a delete marker by version id.", 400)
        raise S3Error("NoSuchKey", "The specified key does not exist.", 404, Key=key)
    await authz.check_object(ctx, version, READ)  # the source's READ (AWS: s3:GetObject)
    check_object_key(version.customer_key, ctx.copy_source_customer_key)
    return version


def _copy_metadata(
    ctx: RequestContext, source: api.ObjectVersion
) -> tuple[str, dict[str, str], dict[str, str]]:
    directive = ctx.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise invalid_argument("Unknown metadata directive.", "x-amz-metadata-directive",
                               directive)
    if directive == "REPLACE":
        return metadata_from_headers(ctx.headers)
    is_self_copy = (source.bucket, source.key) == (ctx.bucket, ctx.key)
    # A copy onto itself that changes the encryption is allowed (AWS's message says so):
    # SSE-C given for the copy or taken off the source (key rotation), or SSE asked for.
    changes_encryption = (ctx.customer_key is not None or source.customer_key is not None
                          or SSE_HEADER in ctx.headers)
    if is_self_copy and "x-amz-storage-class" not in ctx.headers and not changes_encryption:
        raise S3Error(
            "InvalidRequest",
            "This copy request is illegal because it is trying to copy an object to itself "
            "without changing the object's metadata, storage class, website redirect "
            "location or encryption attributes.",
            400,
        )
    return source.content_type, dict(source.system_metadata), dict(source.user_metadata)


def _copy_checksum_algorithms(
    ctx: RequestContext, source: api.ObjectVersion
) -> frozenset[integrity.ChecksumAlgorithm]:
    """x-amz-checksum-algorithm if given, else the algorithms the source was stored with."""
    requested = ctx.headers.get("x-amz-checksum-algorithm")
    names = [requested] if requested is not None else list(source.checksums)
    try:
        return frozenset(integrity.ChecksumAlgorithm(name.upper()) for name in names)
    except ValueError:
        raise invalid_argument("Invalid checksum algorithm.", "x-amz-checksum-algorithm",
                               requested) from None


async def copy_object(ctx: RequestContext) -> Response:
    check_key(ctx.key)
    check_canned_acl_name(ctx.headers)
    source = await copy_source_version(ctx)
    if check_read_conditions(ctx.headers, source, prefix="x-amz-copy-source-if-") is not None:
        raise precondition_failed("x-amz-copy-source-If")
    if source.size_bytes > api.limits.object_size_bytes_max:
        raise S3Error("InvalidRequest", "The specified copy source is larger than the maximum "
                      f"allowable size for a copy source: {api.limits.object_size_bytes_max}",
                      400)
    content_type, system, user = _copy_metadata(ctx, source)
    tags = tags_for_copy(ctx, source)
    # The copy's lock state is what this request asks for (or the bucket's default),
    # never the source's: AWS does not copy retention or legal hold.
    lock_mode, retain_until_ms, legal_hold = requested_lock(ctx.headers, wall_clock_ms())
    info = await ctx.storage.get_bucket(ctx.bucket)
    check_write_allowed(info, lock_mode, legal_hold, ctx.headers, uploads_body=False)
    owner_id, acl = await requested_object_acl(ctx, info)
    algorithms = _copy_checksum_algorithms(ctx, source)
    checksummer = Checksummer(algorithms)
    customer_key = ctx.customer_key  # the copy's: another key, or none, may be given
    key_record = new_key_record(customer_key)
    async with ctx.storage.open_upload(ctx.bucket, ctx.key, customer_key) as upload:
        await stage_body(upload, ctx.storage.read_body(
            source, customer_key=ctx.copy_source_customer_key), checksummer)
        checksums = stored_checksums(checksummer, algorithms)
        version = await upload.commit(
            api.PutSpec(
                etag=body_etag(checksummer.md5_digest(), customer_key, key_record),
                content_type=content_type,
                system_metadata=system,
                user_metadata=user,
                checksums=checksums,
                tags=tags,
                owner_id=owner_id,
                acl=acl,
                lock_mode=lock_mode,
                lock_retain_until_ms=retain_until_ms,
                legal_hold=legal_hold,
                customer_key=key_record,
            ),
            write_conditions(ctx),
            event_name="s3:ObjectCreated:Copy",
            origin=ctx.event_origin(),
        )
    ctx.answered_customer_key = version.customer_key
    result: list = [("LastModified", iso8601_ms(version.last_modified_ms)),
                    ("ETag", f'"{version.etag}"')]
    result += [(f"Checksum{algorithm}", value) for algorithm, value in checksums.items()]
    headers = {}
    if version.s3_version_id != "null":
        headers["x-amz-version-id"] = version.s3_version_id
    if source.s3_version_id != "null":
        headers["x-amz-copy-source-version-id"] = source.s3_version_id
    if version.verdict is not None:
        headers.update(verdict_headers(version.verdict))
    headers.update(await expiration_headers(ctx, version))
    return Response(render("CopyObjectResult", result), media_type="application/xml",
                    headers=headers)
