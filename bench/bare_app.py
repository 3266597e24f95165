"""The framework ceiling: a bare Starlette handler on uvicorn, configured as ``squall
serve`` configures it (httptools, uvloop, no access log, no server header).

GET returns 4 KiB, HEAD its headers, PUT reads the body and answers 200. No routing
table, no authentication, no storage: whatever Squall does beyond this costs time.

Run: ``python -m bench.bare_app --port 9100``
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

body_bytes = 4096
_BODY = b"b" * body_bytes


async def handle(request: Request) -> Response:
    if request.method == "PUT":
        async for _ in request.stream():
            pass
        return Response(status_code=200, headers={"ETag": '"0"'})
    return Response(_BODY, media_type="binary/octet-stream")


app = Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "HEAD", "PUT"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    import uvloop

    config = uvicorn.Config(
        app, host=args.host, port=args.port, http="httptools", loop="none", lifespan="off",
        server_header=False, log_level="warning", access_log=False, timeout_keep_alive=30,
    )  # fmt: skip
    uvloop.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
