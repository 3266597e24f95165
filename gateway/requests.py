"""The request object the gateway hands to handlers: Starlette's, with indexed headers.

Starlette's ``Headers`` keeps the ASGI list of ``(name, value)`` byte pairs and, on
every lookup, lower-cases and encodes the name and scans the list; ``get`` of a header
that is absent goes through a raised and caught ``KeyError``. A small GET looks up a
dozen headers (routing, conditions, checksum mode, as-of, CORS, the body framing), so
:class:`IndexedHeaders` builds one dict per request instead, with the same answers:

* lookups are case-insensitive on the name asked for; the ASGI server gives names
  lower-cased (uvicorn does, and Starlette's own lookups rely on it too);
* ``headers[name]`` and ``get`` answer the FIRST value of a repeated header, as
  Starlette does; ``getlist``, ``items``, ``keys`` and ``raw`` are Starlette's, over the
  same list, so repeated headers are all still there.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Receive, Scope


class IndexedHeaders(Headers):
    def __init__(self, scope: Scope) -> None:
        super().__init__(scope=scope)
        # Reversed, so that the first of repeated headers is the one kept.
        self._first = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in reversed(self._list)
        }

    def __getitem__(self, key: str) -> str:
        try:
            return self._first[key.lower()]
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: Any) -> bool:
        return key.lower() in self._first

    def get(self, key: str, default: Any = None) -> Any:
        return self._first.get(key.lower(), default)

    def has_any(self, names: frozenset[str]) -> bool:
        """Whether any of ``names`` (lower-case) is present: one set operation, for
        checks of a rarely sent family of headers on every request."""
        return not names.isdisjoint(self._first)


class GatewayRequest(Request):
    """``starlette.requests.Request`` whose ``headers`` are :class:`IndexedHeaders`."""

    def __init__(self, scope: Scope, receive: Receive) -> None:
        super().__init__(scope, receive)
        self._headers = IndexedHeaders(scope)
