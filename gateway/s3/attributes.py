"""GetObjectAttributes (``GET /bucket/key?attributes``).

AWS's one-request summary of a version: the attributes named in
``x-amz-object-attributes`` (ETag, Checksum, ObjectParts, StorageClass, ObjectSize), and
nothing else, with no body read. The version is chosen as GetObject chooses it (latest,
``versionId``), and a delete marker answers as it does for GetObject (404 NoSuchKey or
405 MethodNotAllowed with ``x-amz-delete-marker``), so both share ``readable_version``.

Rules, as AWS documents them:
- The header is required; an empty list or an unknown name is 400 InvalidArgument.
- An SSE-C object's attributes need its key, checked as HeadObject checks it.
- The ETag is shown WITHOUT quotes (unlike every other S3 response).
- Checksum: the stored whole-object checksums and their type (COMPOSITE for a
  multipart object's '<base64>-<parts>' value, else FULL_OBJECT); left out when the
  object has none.
- ObjectParts: only for an object made by CompleteMultipartUpload. Its parts are paged
  by ``x-amz-max-parts`` (clamped to ``limits.object_attributes_parts_max``) and
  ``x-amz-part-number-marker`` (the last part number of the previous page), with
  ``PartsCount`` the total. A Part shows PartNumber, Size and the part's own checksum
  (``Checksum<ALGORITHM>``, as UploadPart computed it) when the upload had a checksum
  algorithm. AWS lists Parts in a general-purpose bucket only for such uploads;
  Squall lists them (number and size) for every multipart object, as AWS does for
  directory buckets, because the sizes are what a client pages parts for.
"""

from __future__ import annotations

from starlette.responses import Response

from gateway.errors import invalid_argument
from gateway.s3.common import RequestContext
from gateway.s3.encryption import check_object_key
from gateway.s3.objects import bucket_has_versioning_state, check_key, readable_version
from gateway.xml import Node, bool_text, http_date, render
from storage import api

ATTRIBUTE_NAMES = ("ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize")
# The order AWS's response schema lists a Checksum's members in.
CHECKSUM_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")


def requested_attributes(header: str | None) -> frozenset[str]:
    """The names in ``x-amz-object-attributes`` (comma-separated; repeated headers are
    joined with commas by the HTTP layer)."""
    names = frozenset(name.strip() for name in (header or "").split(",") if name.strip())
    if not names:
        raise invalid_argument("The x-amz-object-attributes header specifying the "
                               "attributes to be retrieved is either missing or empty",
                               "x-amz-object-attributes", header or "")
    for name in names:
        if name not in ATTRIBUTE_NAMES:
            raise invalid_argument("Invalid attribute name specified.",
                                   "x-amz-object-attributes", name)
    return names


def _header_integer(ctx: RequestContext, name: str, default: int, maximum: int) -> int:
    raw = ctx.headers.get(name)
    if raw is None:
        return default
    if not raw.strip().isdigit():
        raise invalid_argument(f"Provided {name} not an integer or within integer range",
                               name, raw)
    return min(int(raw), maximum)


def checksum_nodes(version: api.ObjectVersion) -> list[Node] | None:
    if not version.checksums:
        return None
    nodes: list[Node] = [(f"Checksum{algorithm}", version.checksums[algorithm])
                         for algorithm in CHECKSUM_ALGORITHMS
                         if algorithm in version.checksums]
    # A multipart object's COMPOSITE checksum is '<base64>-<part count>'.
    composite = any("-" in value for value in version.checksums.values())
    nodes.append(("ChecksumType", "COMPOSITE" if composite else "FULL_OBJECT"))
    return nodes


def parts_nodes(version: api.ObjectVersion, max_parts: int, marker: int) -> list[Node] | None:
    """One page of a multipart object's parts; None for an object written in one piece."""
    if not version.part_sizes:
        return None
    total = len(version.part_sizes)
    first = min(marker, total)  # part numbers are 1-based: part N is index N - 1
    listed = range(first + 1, min(first + max_parts, total) + 1)
    is_truncated = listed.stop <= total
    nodes: list[Node] = [
        ("IsTruncated", bool_text(is_truncated)),
        ("MaxParts", str(max_parts)),
        ("NextPartNumberMarker", str(listed[-1]) if is_truncated and listed else None),
        ("PartNumberMarker", str(marker)),
    ]
    algorithm = next(iter(version.checksums), None)  # an upload has at most one
    for number in listed:
        part: list[Node] = []
        if version.part_checksums and algorithm is not None:
            part.append((f"Checksum{algorithm}", version.part_checksums[number - 1]))
        part += [("PartNumber", str(number)), ("Size", str(version.part_sizes[number - 1]))]
        nodes.append(("Part", part))
    nodes.append(("PartsCount", str(total)))
    return nodes


async def get_object_attributes(ctx: RequestContext) -> Response:
    check_key(ctx.key)
    names = requested_attributes(ctx.headers.get("x-amz-object-attributes"))
    max_parts = _header_integer(ctx, "x-amz-max-parts", api.limits.object_attributes_parts_max,
                                api.limits.object_attributes_parts_max)
    marker = _header_integer(ctx, "x-amz-part-number-marker", 0,
                             api.limits.parts_per_upload_max)
    version = await readable_version(ctx, send_body=False)
    check_object_key(version.customer_key, ctx.customer_key)  # SSE-C: as HeadObject
    headers = {"Last-Modified": http_date(version.last_modified_ms)}
    if version.s3_version_id != "null" or await bucket_has_versioning_state(ctx, version):
        headers["x-amz-version-id"] = version.s3_version_id
    nodes: list[Node] = [
        ("ETag", version.etag if "ETag" in names else None),
        ("Checksum", checksum_nodes(version) if "Checksum" in names else None),
        ("ObjectParts", parts_nodes(version, max_parts, marker)
         if "ObjectParts" in names else None),
        ("StorageClass", version.storage_class if "StorageClass" in names else None),
        ("ObjectSize", str(version.size_bytes) if "ObjectSize" in names else None),
    ]
    return Response(render("GetObjectAttributesResponse", nodes),
                    media_type="application/xml", headers=headers)
