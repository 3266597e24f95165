"""The multipart/form-data parser and reader behind POST Object (gateway/form.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.form import (
    FormEnd,
    FormError,
    FormParser,
    FormReader,
    PartData,
    PartEnd,
    PartStart,
    boundary_from_content_type,
    split_header_value,
)
from storage.api import limits

BOUNDARY = b"----squallBoundary7MA4YWxkTrZu0gW"


def form_body(parts: Sequence[tuple[str, str | None, bytes]], *, boundary: bytes = BOUNDARY,
              preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    """A body as browsers write it: (name, filename, value) per part."""
    out = [preamble]
    for name, filename, value in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.append(b"--" + boundary + b"\r\n")
        out.append(f"Content-Disposition: {disposition}\r\n".encode())
        if filename is not None:
            out.append(b"Content-Type: application/octet-stream\r\n")
        out.append(b"\r\n" + value + b"\r\n")
    out.append(b"--" + boundary + b"--\r\n" + epilogue)
    return b"".join(out)


def parse(pieces: Sequence[bytes], boundary: bytes = BOUNDARY) -> list[tuple[str, str | None, bytes]]:
    """Feed the pieces; the parts seen, with each part's bytes joined."""
    parser = FormParser(boundary)
    parts: list[tuple[str, str | None, bytes]] = []
    current: tuple[str, str | None] | None = None
    value = bytearray()
    ended = False
    for piece in pieces:
        for event in parser.feed(piece):
            assert not ended, "no event after FormEnd"
            if isinstance(event, PartStart):
                assert current is None
                current, value = (event.name, event.filename), bytearray()
            elif isinstance(event, PartData):
                assert current is not None
                value += event.data
            elif isinstance(event, PartEnd):
                assert current is not None
                parts.append((*current, bytes(value)))
                current = None
            else:
                assert isinstance(event, FormEnd)
                ended = True
    assert ended and parser.is_done
    return parts


PARTS = [
    ("key", None, b"uploads/${filename}"),
    ("x-amz-meta-note", None, b"caf\xc3\xa9"),
    ("empty", None, b""),
    # A file whose bytes hold the boundary's beginnings, CRLFs and dashes.
    ("file", 'a;b \\"c\\".txt', b"\r\n--" + BOUNDARY[:-1] + b"\r\n\r\n--\r" + bytes(range(256))),
    ("after", None, b"ignored by AWS, but still well-formed"),
]


def test_every_two_way_split_gives_the_same_parts() -> None:
    body = form_body(PARTS, preamble=b"preamble\r\n", epilogue=b"epilogue")
    for cut in range(len(body) + 1):
        assert parse([body[:cut], body[cut:]]) == parse([body]), cut
    assert parse([body])[3] == ("file", 'a;b "c".txt', PARTS[3][2])
    assert [name for name, _, _ in parse([body])] == [name for name, _, _ in PARTS]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["key", "policy", "file", "x-amz-meta-a"]),
                       st.binary(max_size=200)), max_size=5),
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30),
)
def test_any_split_into_pieces_gives_the_parts_back(
    raw_parts: list[tuple[str, bytes]], piece_sizes: list[int]
) -> None:
    parts = [(name, None, value) for name, value in raw_parts]
    body = form_body(parts)
    pieces, position, index = [], 0, 0
    while position < len(body):
        size = piece_sizes[index % len(piece_sizes)]
        pieces.append(body[position:position + size])
        position, index = position + size, index + 1
    assert parse(pieces) == parts


def test_large_file_pieces_pass_as_views_of_the_input() -> None:
    """A file is not copied on its way through: body events are views of what was fed."""
    head = form_body([("key", None, b"k")]).removesuffix(b"--" + BOUNDARY + b"--\r\n")
    head += b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"\r\n\r\n'
    parser = FormParser(BOUNDARY)
    assert [type(e) for e in parser.feed(head)] == [PartStart, PartData, PartEnd, PartStart]
    piece = b"x" * 65536
    for _ in range(3):  # no CR near its end: nothing held back, the piece passes whole
        [event] = parser.feed(piece)
        assert isinstance(event, PartData) and isinstance(event.data, memoryview)
        assert event.data.obj is piece and len(event.data) == len(piece)
    # A CR that may begin the delimiter is held back, and only it.
    [event] = parser.feed(piece + b"\r\n--" + BOUNDARY[:5])
    assert len(event.data) == len(piece)
    assert [type(e) for e in parser.feed(BOUNDARY[5:] + b"--")] == [PartEnd, FormEnd]


def test_a_part_without_header_lines_and_transport_padding() -> None:
    body = (b"--" + BOUNDARY + b"  \t\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--"
            + BOUNDARY + b"--")
    assert parse([body]) == [("a", None, b"1")]
    nameless = b"--" + BOUNDARY + b"\r\n\r\nvalue\r\n--" + BOUNDARY + b"--"
    with pytest.raises(FormError) as caught:
        parse([nameless])
    assert caught.value.code == "MalformedPOSTRequest"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n", id="no-disposition"),
        pytest.param(b"--" + BOUNDARY + b"\r\nContent-Disposition: attachment; name=a\r\n\r\n",
                     id="not-form-data"),
        pytest.param(b"--" + BOUNDARY + b"\r\nno colon here\r\n\r\n", id="header-without-name"),
        pytest.param(b"--" + BOUNDARY + b"junk\r\n", id="text-after-boundary"),
        pytest.param(b"x" * (limits.post_form_preamble_bytes_max + 200), id="no-boundary"),
        pytest.param(b"--" + BOUNDARY + b"\r\nX: " + b"y" * limits.post_form_part_header_bytes_max,
                     id="endless-headers"),
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    parser = FormParser(BOUNDARY)
    with pytest.raises(FormError) as caught:
        parser.feed(body)
    assert (caught.value.code, caught.value.status) == ("MalformedPOSTRequest", 400)


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc", b"abc"),
        ('multipart/form-data; charset=utf-8; boundary="a b:c"', b"a b:c"),
        ("Multipart/Form-Data;boundary=----WebKitFormBoundaryx", b"----WebKitFormBoundaryx"),
    ],
)
def test_boundary_from_content_type(content_type: str, boundary: bytes) -> None:
    assert boundary_from_content_type(content_type) == boundary


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=",
                                          "multipart/form-data; boundary=" + "b" * 71,
                                          'multipart/form-data; boundary="trailing "'])
def test_a_missing_or_invalid_boundary_is_malformed(content_type: str) -> None:
    with pytest.raises(FormError) as caught:
        boundary_from_content_type(content_type)
    assert caught.value.code == "MalformedPOSTRequest"


def test_header_parameters() -> None:
    assert split_header_value('form-data; name="a;b"; filename="x\\"y.txt"') == (
        "form-data", {"name": "a;b", "filename": 'x"y.txt'})


# --- the reader -----------------------------------------------------------------------------


async def _pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    for position in range(0, len(body), size):
        yield body[position:position + size]


def _read(body: bytes, size: int = 7) -> tuple[dict[str, str], str | None, bytes, bool]:
    async def run() -> tuple[dict[str, str], str | None, bytes, bool]:
        reader = FormReader(_pieces(body, size), BOUNDARY)
        head = await reader.read_head()
        fields = {name: field.value for name, field in head.fields.items()}
        data = b""
        if head.file is not None:
            data = b"".join([bytes(p) async for p in reader.file_pieces()])
        complete = await reader.drain(limits.post_form_trailing_bytes_max)
        return fields, None if head.file is None else head.file.filename, data, complete

    return asyncio.run(run())


def test_reader_fields_file_and_what_follows() -> None:
    body = form_body([("Key", None, b"k/${filename}"), ("Content-Type", None, b"text/plain"),
                      ("FILE", "photo.jpg", b"\x00" * 5000), ("x-amz-meta-late", None, b"no")])
    fields, filename, data, complete = _read(body)
    assert fields == {"key": "k/${filename}", "content-type": "text/plain"}
    assert (filename, data, complete) == ("photo.jpg", b"\x00" * 5000, True)


def test_reader_without_a_file() -> None:
    fields, filename, data, _ = _read(form_body([("key", None, b"k")]))
    assert (fields, filename, data) == ({"key": "k"}, None, b"")


def test_reader_a_body_cut_inside_the_file_is_malformed() -> None:
    body = form_body([("key", None, b"k"), ("file", "f", b"a" * 100)])[:-60]
    with pytest.raises(FormError) as caught:
        _read(body)
    assert caught.value.code == "MalformedPOSTRequest"


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param([("policy", None, b"p" * (limits.post_form_field_bytes_max + 1))],
                     id="one-field-too-large"),
        pytest.param([(f"x-amz-meta-{n}", None, b"v" * 2000) for n in range(11)],
                     id="fields-together-too-large"),
        pytest.param([(f"x-ignore-{n}", None, b"") for n in range(limits.post_form_fields_max + 1)],
                     id="too-many-fields"),
    ],
)
def test_reader_bounds_what_precedes_the_file(parts: list[tuple[str, None, bytes]]) -> None:
    with pytest.raises(FormError) as caught:
        _read(form_body([*parts, ("file", "f", b"x")]), size=4096)
    assert (caught.value.code, caught.value.status) == ("MaxPostPreDataLengthExceededError", 400)


def test_reader_a_field_given_twice_or_not_utf8() -> None:
    with pytest.raises(FormError) as caught:
        _read(form_body([("key", None, b"a"), ("KEY", None, b"b"), ("file", "f", b"")]))
    assert caught.value.code == "InvalidArgument"
    with pytest.raises(FormError) as caught:
        _read(form_body([("key", None, b"\xff"), ("file", "f", b"")]))
    assert caught.value.code == "MalformedPOSTRequest"


def test_reader_stops_draining_after_its_bound() -> None:
    body = form_body([("file", "f", b"x"), ("after", None, b"y" * 10_000)])

    async def run() -> bool:
        reader = FormReader(_pieces(body, 1000), BOUNDARY)
        await reader.read_head()
        assert b"".join([bytes(p) async for p in reader.file_pieces()]) == b"x"
        return await reader.drain(2000)

    assert asyncio.run(run()) is False
