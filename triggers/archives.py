"""SavedModel archives (.tar, .tar.gz/.tgz, .zip): recognised by content, unpacked safely.

Rules and theory of operation:

* The format is decided by the body's first bytes, never by the key's name: ``PK``
  (zip), ``\\x1f\\x8b`` (gzip: a .tar.gz) or ``ustar`` at offset 257 (tar). A Keras
  ``.keras`` file is a zip too; it is told apart by its members (``config.json`` at the
  root and no ``saved_model.pb``), see ``is_saved_model_zip``.
* An archive is untrusted input. ``extract`` writes only regular files and directories,
  under a directory the caller owns, and refuses (``ArchiveRefused``, with the member's
  name) absolute paths, ``..`` components, backslashes and NULs, links (symbolic or
  hard), devices and fifos, a member that appears twice, more than
  ``limits.model_archive_members_max`` members and more than
  ``limits.model_archive_bytes_max`` bytes in all. The bytes are counted as they are
  written (a member's declared size is not trusted) and, for a gzip, on the decompressed
  stream too, so a decompression bomb stops at the bound. Since no link is ever created,
  no later member can be written through one.
* ``find_saved_model`` accepts the SavedModel directory (``saved_model.pb`` and
  ``variables/``) at the archive's root or exactly one directory down.
"""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from storage.api import limits

SAVED_MODEL_FILE = "saved_model.pb"
_COPY_PIECE_BYTES = 1024 * 1024
# tar headers (512 bytes each, more for long names and pax records) are part of the
# decompressed stream but not of the files: allow them on top of the files' bytes.
_TAR_HEADER_BYTES_PER_MEMBER_MAX = 4096


class ArchiveRefused(ValueError):
    """An archive that is malformed, hostile or over a bound."""


def archive_format(body: bytes | memoryview) -> str | None:
    """'zip', 'tar.gz', 'tar', or None when the body is none of them."""
    head = bytes(body[:262])
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tar.gz"
    if head[257:262] == b"ustar":
        return "tar"
    return None


def is_saved_model_zip(body: bytes) -> bool:
    """Whether a zip holds a SavedModel (else it is taken for a Keras .keras file)."""
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, ValueError):
        return False  # the Keras loader will say what is wrong with it
    return any(PurePosixPath(name).name == SAVED_MODEL_FILE for name in names)


def _relative_parts(name: str) -> tuple[str, ...]:
    """The member's path as parts under the target; () for the archive's root itself."""
    if "\x00" in name or "\\" in name:
        raise ArchiveRefused(f"member {name!r}: backslashes and NULs are refused")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise ArchiveRefused(f"member {name!r}: absolute paths are refused")
    parts = tuple(part for part in path.parts if part != ".")
    if ".." in parts:
        raise ArchiveRefused(f"member {name!r}: '..' is refused")
    return parts


class _Budget:
    """Members and bytes written so far, against the archive bounds."""

    def __init__(self) -> None:
        self.members = 0
        self.bytes = 0
        self.seen: set[tuple[str, ...]] = set()

    def member(self, name: str) -> tuple[str, ...]:
        self.members += 1
        if self.members > limits.model_archive_members_max:
            raise ArchiveRefused(f"more than {limits.model_archive_members_max} members")
        parts = _relative_parts(name)
        if parts and parts in self.seen:
            raise ArchiveRefused(f"member {name!r} appears twice")
        self.seen.add(parts)
        return parts

    def add(self, count: int) -> None:
        self.bytes += count
        if self.bytes > limits.model_archive_bytes_max:
            raise ArchiveRefused(f"unpacks to more than {limits.model_archive_bytes_max} bytes")


def _write_file(target: Path, parts: tuple[str, ...], source: IO[bytes], budget: _Budget) -> None:
    path = target.joinpath(*parts)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as file:
            while piece := source.read(_COPY_PIECE_BYTES):
                budget.add(len(piece))
                file.write(piece)
    except (FileExistsError, NotADirectoryError) as error:
        raise ArchiveRefused(f"member {'/'.join(parts)!r} clashes with another: "
                             f"{error.strerror}") from None


def _make_directory(target: Path, parts: tuple[str, ...]) -> None:
    try:
        target.joinpath(*parts).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise ArchiveRefused(f"member {'/'.join(parts)!r} clashes with another: "
                             f"{error.strerror}") from None


def _extract_zip(body: bytes, target: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        for info in archive.infolist():
            kind = stat.S_IFMT(info.external_attr >> 16)
            if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise ArchiveRefused(f"member {info.filename!r}: links and special files "
                                     "are refused")
            parts = budget.member(info.filename)
            if info.is_dir() or kind == stat.S_IFDIR:
                _make_directory(target, parts)
            elif not parts:
                raise ArchiveRefused(f"member {info.filename!r} has no name")
            else:
                with archive.open(info) as source:
                    _write_file(target, parts, source, budget)


class _CountingReader:
    """A file's ``read``, failing once more than ``bytes_max`` bytes came through (the
    decompressed side of a gzip: a bomb stops here, not when the disk is full)."""

    def __init__(self, raw: IO[bytes], bytes_max: int) -> None:
        self._raw = raw
        self._bytes_max = bytes_max
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        if self.count > self._bytes_max:
            raise ArchiveRefused(f"unpacks to more than {limits.model_archive_bytes_max} bytes")
        return data


def _tar_members(stream: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        member = stream.next()
        if member is None:
            return
        yield member


def _extract_tar(body: bytes, compressed: bool, target: Path, budget: _Budget) -> None:
    raw: IO[bytes] = io.BytesIO(body)
    if compressed:
        raw = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]
    reader = _CountingReader(raw, limits.model_archive_bytes_max
                             + _TAR_HEADER_BYTES_PER_MEMBER_MAX * limits.model_archive_members_max)
    # Stream mode ("r|"): members are read in order, once, without seeking back.
    with tarfile.open(fileobj=reader, mode="r|") as stream:  # type: ignore[call-overload]
        for member in _tar_members(stream):
            if not (member.isreg() or member.isdir()):
                raise ArchiveRefused(f"member {member.name!r}: links, devices and fifos "
                                     "are refused")
            parts = budget.member(member.name)
            if member.isdir():
                _make_directory(target, parts)
                continue
            if not parts:
                raise ArchiveRefused(f"member {member.name!r} has no name")
            source = stream.extractfile(member)
            assert source is not None  # a regular file always has a body
            _write_file(target, parts, source, budget)


def extract(body: bytes, target: Path) -> None:
    """Unpack an archive (``archive_format`` says which) into the empty directory
    ``target``; ``ArchiveRefused`` for anything malformed, hostile or over a bound."""
    kind = archive_format(body)
    budget = _Budget()
    try:
        if kind == "zip":
            _extract_zip(body, target, budget)
        elif kind in ("tar", "tar.gz"):
            _extract_tar(body, kind == "tar.gz", target, budget)
        else:
            raise ArchiveRefused("not a .tar, .tar.gz or .zip archive")
    # zipfile: RuntimeError for an encrypted member, NotImplementedError for an unknown
    # compression method.
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error,
            RuntimeError, NotImplementedError) as error:
        raise ArchiveRefused(f"malformed {kind} archive: {error}") from None


def find_saved_model(root: Path) -> Path:
    """The SavedModel directory: ``root`` itself or its one subdirectory holding one."""
    if (root / SAVED_MODEL_FILE).is_file():
        return root
    found = sorted(child for child in root.iterdir()
                   if child.is_dir() and (child / SAVED_MODEL_FILE).is_file())
    if not found:
        raise ArchiveRefused(f"no {SAVED_MODEL_FILE} at the archive's root or one "
                             "directory down")
    if len(found) > 1:
        raise ArchiveRefused(f"several directories hold a {SAVED_MODEL_FILE}: "
                             f"{', '.join(child.name for child in found)}")
    return found[0]
