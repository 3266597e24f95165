"""The gateway's query dict made from SigV4's decoded pairs equals the gateway's own
parse of the query (``parse_query``), for any query string a client may send."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.app import parse_query, query_from_pairs
from gateway.auth import parse_query_pairs

# The characters that matter to the parsers, escapes of every kind (valid UTF-8,
# invalid UTF-8, malformed), and raw non-ASCII bytes.
_PIECES = st.sampled_from([
    "a", "Z", "0", "-", "_", ".", "~", "=", "&", "+", "%", "%2", "%2F", "%2f", "%20",
    "%C3%A9", "%C3", "%E2%82%AC", "%FF", "%zz", " ", "/", "?", "X-Amz-Credential",
])
_RAW_BYTES = st.sampled_from([b"\xc3\xa9", b"\xff", b"\x80", b"\xe2\x82\xac"])


def _old_and_new(raw_query: bytes) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    return (parse_query(raw_query.decode("latin-1")),
            query_from_pairs(parse_query_pairs(raw_query), raw_query))


@given(st.lists(_PIECES, max_size=30))
def test_ascii_queries_parse_the_same(pieces: list[str]) -> None:
    raw_query = "".join(pieces).encode("ascii")
    old, new = _old_and_new(raw_query)
    assert new == old


@given(st.lists(st.one_of(_PIECES.map(str.encode), _RAW_BYTES), max_size=30))
def test_queries_with_raw_bytes_parse_the_same(pieces: list[bytes]) -> None:
    old, new = _old_and_new(b"".join(pieces))
    assert new == old


def test_a_presigned_query() -> None:
    raw_query = (b"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20261128%2F"
                 b"us-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261128T190000Z&X-Amz-Expires=3600"
                 b"&X-Amz-SignedHeaders=host&X-Amz-Signature=ab&response-content-type=a+b%C3%A9"
                 b"&versionId&&x=1&x=2")
    old, new = _old_and_new(raw_query)
    assert new == old
    assert new["X-Amz-Credential"] == ["AKID/20261128/us-east-1/s3/aws4_request"]
    assert new["response-content-type"] == ["a bé"]
    assert new["versionId"] == [""] and new["x"] == ["1", "2"]
