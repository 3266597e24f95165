"""``GET /_squall/health`` (``router.HEALTH_PATH``): is this process able to serve?

For liveness and readiness probes (Kubernetes, the Dockerfile's HEALTHCHECK, a load
balancer). Rules:

* No authentication: a probe carries no credentials. So the answer reveals nothing of
  the store's data: only ``{"status": "ok"}`` or ``{"status": "unavailable"}``, never a
  bucket, a key, a count or the error's text (that goes to the log).
* Healthy means storage answers a cheap call: ``StorageClient.outbox_status``, one read
  transaction per shard through the same client and transport as every S3 request, so a
  shard whose node does not answer makes the process unhealthy. 200 when it answers
  within ``limits.health_storage_timeout_ms``; 503 when it raises a typed storage error
  or does not answer in time.
* GET and HEAD only; anything else is 405 with an S3 XML error, like the metrics.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import Response

from gateway.errors import S3Error
from storage import api
from storage.api import limits

log = logging.getLogger("squall.health")

CONTENT_TYPE = "application/json"
HEALTHY_BODY = b'{"status": "ok"}'
UNHEALTHY_BODY = b'{"status": "unavailable"}'


async def health_response(method: str, storage: api.StorageClient) -> Response:
    if method not in ("GET", "HEAD"):
        raise S3Error("MethodNotAllowed", "Use GET to read the health.", 405, Method=method,
                      ResourceType="HEALTH")
    try:
        async with asyncio.timeout(limits.health_storage_timeout_ms / 1000):
            await storage.outbox_status()
    except TimeoutError:
        log.warning("health: storage did not answer within %d ms",
                    limits.health_storage_timeout_ms)
        return _answer(503, UNHEALTHY_BODY)
    except api.StorageError as error:
        log.warning("health: storage failed: %r", error)
        return _answer(503, UNHEALTHY_BODY)
    return _answer(200, HEALTHY_BODY)


def _answer(status: int, body: bytes) -> Response:
    # Never cached: a probe must see the state of now.
    return Response(body, status_code=status, media_type=CONTENT_TYPE,
                    headers={"Cache-Control": "no-store"})
