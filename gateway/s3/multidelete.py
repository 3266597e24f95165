"""DeleteObjects: up to 1000 deletes in one request, answered per key.

The deletes are submitted together, so the store's group commit makes them share a few
synced transactions instead of one each.
"""

from __future__ import annotations

import asyncio

from starlette.responses import Response

from gateway.errors import S3Error, error_for_storage, malformed_xml
from gateway.s3.common import RequestContext
from gateway.s3.documents import read_document
from gateway.s3.object_lock import bypass_governance
from gateway.xml import Node, bool_text, child_text, children, local_name, parse, render
from storage import api


def _parse_request(body: bytes) -> tuple[bool, list[tuple[str, str | None]]]:
    root = parse(body)
    if local_name(root) != "Delete":
        raise malformed_xml()
    quiet = (child_text(root, "Quiet") or "false").strip().lower() == "true"
    objects: list[tuple[str, str | None]] = []
    for element in children(root, "Object"):
        key = child_text(element, "Key")
        if key is None:
            raise malformed_xml()
        objects.append((key, child_text(element, "VersionId")))
    if not objects or len(objects) > api.limits.delete_objects_keys_max:
        raise malformed_xml()
    return quiet, objects


async def _delete_one(
    ctx: RequestContext, key: str, version_id: str | None, bypass: bool
) -> api.DeleteResult | S3Error:
    if len(key.encode("utf-8")) > api.limits.key_bytes_max:
        return S3Error("KeyTooLongError", "Your key is too long", 400)
    if ctx.key_access is not None and not await ctx.key_access(key, version_id):
        return S3Error("AccessDenied", "Access Denied", 403)
    try:
        # A version under Object Lock comes back as this entry's AccessDenied.
        return await ctx.storage.delete_object(ctx.bucket, key, version_id=version_id,
                                               origin=ctx.event_origin(),
                                               bypass_governance=bypass)
    except api.NoSuchBucket:
        raise
    except api.StorageError as error:
        return error_for_storage(error, bucket=ctx.bucket, key=key)


def _result_node(key: str, version_id: str | None, outcome: api.DeleteResult | S3Error) -> Node:
    if isinstance(outcome, S3Error):
        return ("Error", [("Key", key), ("VersionId", version_id),
                          ("Code", outcome.code), ("Message", outcome.message)])
    fields: list[Node] = [("Key", key), ("VersionId", version_id)]
    if outcome.delete_marker:
        # AWS: the marker this delete created, or the marker it removed by version id.
        fields.append(("DeleteMarker", bool_text(True)))
        fields.append(("DeleteMarkerVersionId", outcome.s3_version_id))
    return ("Deleted", fields)


async def delete_objects(ctx: RequestContext) -> Response:
    # AWS requires integrity data on DeleteObjects (Content-MD5 or a checksum).
    body = await read_document(ctx, api.limits.request_xml_body_bytes_max,
                               integrity_required=True)
    quiet, objects = _parse_request(body)
    await ctx.storage.get_bucket(ctx.bucket)
    bypass = bypass_governance(ctx.headers)
    outcomes = await asyncio.gather(*(_delete_one(ctx, key, vid, bypass)
                                      for key, vid in objects))
    nodes = [
        _result_node(key, version_id, outcome)
        for (key, version_id), outcome in zip(objects, outcomes, strict=True)
        if not (quiet and not isinstance(outcome, S3Error))
    ]
    return Response(render("DeleteResult", nodes), media_type="application/xml")
