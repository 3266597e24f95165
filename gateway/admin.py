"""Squall's admin API (not S3): registered pre-commit functions, the notification outbox.

    PUT    /_squall/functions/NAME   body: a definition (JSON or YAML) -> 200, JSON
    GET    /_squall/functions/NAME   -> 200, the stored definition as JSON
    GET    /_squall/functions        -> 200, {"functions": [...]}
    DELETE /_squall/functions/NAME   -> 204
    GET    /_squall/outbox           -> 200, {"shards": [{depth, depth_max, ...}],
                                              "delivery": {per-target state} | null}
    PUT    /_squall/users/ACCESS_KEY body: {"secret_key": ..., "display_name": ...}
                                     -> 200, the user without its secret
    GET    /_squall/users/ACCESS_KEY -> 200, {"access_key", "display_name", "canonical_id"}
    GET    /_squall/users            -> 200, {"users": [...]} (never a secret)
    DELETE /_squall/users/ACCESS_KEY -> 204
    GET    /_squall/backup[/SHARD]   -> 200, a consistent copy of the shard's store (0 by
                                        default), streamed: what ``squall backup
                                        --endpoint`` writes (storage/engine/backup.py)

Requests are SigV4-signed like any S3 request (``_squall`` can never be a bucket name:
S3 bucket names have no '_'), by root: ``gateway/authz.py`` refuses everyone else
(403 AccessDenied). Errors are S3 XML errors.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from gateway.body import RequestBody
from gateway.errors import S3Error
from gateway.responses import BodyResponse, close_stream
from gateway.s3.common import RequestContext
from storage import api

FUNCTIONS_PATH = "/_squall/functions"
OUTBOX_PATH = "/_squall/outbox"
USERS_PATH = "/_squall/users"
BACKUP_PATH = "/_squall/backup"


def _json(document: Mapping[str, Any] | list[Any], status: int = 200) -> Response:
    return Response(json.dumps(document, sort_keys=True, indent=1) + "\n", status_code=status,
                    media_type="application/json")


def _not_found(name: str) -> S3Error:
    return S3Error("NoSuchFunction", f"No function named {name!r} is registered.", 404,
                   FunctionName=name)


async def handle(ctx: RequestContext) -> Response:
    """The handler of the router's ``SquallAdmin`` operation."""
    raw_path = ctx.request.scope.get("raw_path") or ctx.request.scope["path"].encode()
    path = unquote(raw_path.decode("latin-1").split("?", 1)[0])
    if path.rstrip("/") == OUTBOX_PATH:
        return await outbox_status(ctx)
    if path.rstrip("/") == USERS_PATH or path.startswith(USERS_PATH + "/"):
        return await handle_users(ctx, path)
    if path.rstrip("/") == BACKUP_PATH or path.startswith(BACKUP_PATH + "/"):
        return await backup_stream(ctx, path.rstrip("/")[len(BACKUP_PATH) + 1:])
    return await handle_admin(ctx.request, raw_path, ctx.body, ctx.config.functions)


async def handle_users(ctx: RequestContext, path: str) -> Response:
    """The users admin API (gateway/users.py keeps them)."""
    method = ctx.request.method
    if path.rstrip("/") == USERS_PATH:
        if method != "GET":
            raise S3Error("MethodNotAllowed", "Use GET to list users.", 405, Method=method,
                          ResourceType="USERS")
        return _json({"users": await ctx.users.list()})
    access_key = path[len(USERS_PATH) + 1:]
    try:
        if method == "PUT":
            return _json(await ctx.users.put(access_key, await _user_document(ctx)))
        if method == "GET":
            return _json(await ctx.users.get(access_key))
        if method == "DELETE":
            await ctx.users.delete(access_key)
            return Response(status_code=204)
    except api.NoSuchKey:
        raise S3Error("NoSuchUser", f"No user with access key {access_key!r}.", 404,
                      AccessKeyId=access_key) from None
    except api.InvalidArgument as error:
        raise S3Error("InvalidArgument", str(error), 400, AccessKeyId=access_key) from error
    raise S3Error("MethodNotAllowed", "The specified method is not allowed against this "
                  "resource.", 405, Method=method, ResourceType="USER")


async def _user_document(ctx: RequestContext) -> dict[str, Any]:
    body = await ctx.body.read_all(api.limits.user_record_bytes_max)
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise api.InvalidArgument('the body must be a JSON object: {"secret_key": "...", '
                                  '"display_name": "..."}')
    return document


async def backup_stream(ctx: RequestContext, shard_text: str) -> Response:
    """A shard's snapshot, streamed; its first chunk is read before the answer starts, so
    a refusal (a backup already running: SlowDown) is an error response, not a cut
    stream."""
    if ctx.request.method != "GET":
        raise S3Error("MethodNotAllowed", "Use GET to take a backup.", 405,
                      Method=ctx.request.method, ResourceType="BACKUP")
    shard_count = ctx.storage.shard_count
    if not shard_text:
        shard_text = "0"
    if not shard_text.isdigit() or int(shard_text) >= shard_count:
        raise S3Error("InvalidArgument", f"No shard {shard_text!r}: this store has "
                      f"{shard_count} (0 to {shard_count - 1}).", 400)
    chunks = ctx.storage.snapshot(int(shard_text))
    try:
        first = await anext(chunks)
    except BaseException:
        await close_stream(chunks)
        raise

    async def stream() -> AsyncIterator[bytes | memoryview]:
        try:
            yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await close_stream(chunks)

    response = BodyResponse(stream(), status_code=200, headers={
        "Content-Type": "application/octet-stream",
        "Content-Disposition": 'attachment; filename="data.mdb"',
        "x-squall-shard": shard_text, "x-squall-shard-count": str(shard_count)})
    del response.headers["content-length"]  # not known ahead: sent chunked
    return response


async def outbox_status(ctx: RequestContext) -> Response:
    """The outbox depth of every shard and, when a dispatcher runs, its targets' state."""
    if ctx.request.method != "GET":
        raise S3Error("MethodNotAllowed", "Use GET to read the outbox status.", 405,
                      Method=ctx.request.method, ResourceType="OUTBOX")
    shards = [
        {"shard": s.shard, "depth": s.depth, "depth_max": s.depth_max,
         "next_sequence": s.next_sequence, "oldest_event_time_ms": s.oldest_event_time_ms}
        for s in await ctx.storage.outbox_status()
    ]
    delivery = ctx.config.delivery
    return _json({"shards": shards,
                  "delivery": None if delivery is None else dict(delivery.delivery_status())})


async def handle_admin(
    request: Request, raw_path: bytes, body: RequestBody, functions: api.FunctionAdmin | None
) -> Response:
    path = unquote(raw_path.decode("latin-1").split("?", 1)[0])
    if functions is None:
        raise S3Error("NotImplemented", "Functions are not enabled on this server (start it "
                      "with a pre-commit hook).", 501)
    if path.rstrip("/") == FUNCTIONS_PATH:
        if request.method != "GET":
            raise S3Error("MethodNotAllowed", "Use GET to list functions.", 405,
                          Method=request.method, ResourceType="FUNCTIONS")
        return _json({"functions": await functions.list_functions()})
    if not path.startswith(FUNCTIONS_PATH + "/"):
        raise S3Error("InvalidURI", "Couldn't parse the specified URI.", 400)
    name = path[len(FUNCTIONS_PATH) + 1:]
    try:
        if request.method == "PUT":
            document = await body.read_all(api.limits.function_definition_bytes_max)
            return _json(await functions.put_function(name, document))
        if request.method == "GET":
            return _json(await functions.get_function(name))
        if request.method == "DELETE":
            await functions.delete_function(name)
            return Response(status_code=204)
    except api.NoSuchKey:
        raise _not_found(name) from None
    except api.InvalidArgument as error:
        raise S3Error("InvalidArgument", str(error), 400, FunctionName=name) from error
    raise S3Error("MethodNotAllowed", "The specified method is not allowed against this "
                  "resource.", 405, Method=request.method, ResourceType="FUNCTION")
