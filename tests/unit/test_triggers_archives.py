"""``triggers.archives``: SavedModel archives are recognised by content and unpacked
safely; hostile or oversized ones are refused with the member that is wrong. No
TensorFlow here: the archives are built by hand."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from storage.api import limits
from triggers.archives import (
    ArchiveRefused,
    archive_format,
    extract,
    find_saved_model,
    is_saved_model_zip,
)

SAVED_MODEL = {"model/saved_model.pb": b"pb", "model/variables/variables.index": b"ix",
               "model/variables/variables.data-00000-of-00001": b"data"}


def tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]], gz: bool = False) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz" if gz else "w") as archive:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                archive.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                archive.addfile(info, io.BytesIO(member[1]))
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if symlink is not None:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


def special(name: str, kind: bytes, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


def test_formats_are_told_by_content_not_name(tmp_path: Path) -> None:
    members = list(SAVED_MODEL.items())
    assert archive_format(tar_bytes(members)) == "tar"
    assert archive_format(tar_bytes(members, gz=True)) == "tar.gz"
    assert archive_format(zip_bytes(SAVED_MODEL)) == "zip"
    assert archive_format(b"\x89HDF\r\n\x1a\n" + b"\0" * 300) is None
    # A Keras .keras file is a zip too, without a saved_model.pb.
    keras_like = zip_bytes({"config.json": b"{}", "model.weights.h5": b"w"})
    assert not is_saved_model_zip(keras_like) and is_saved_model_zip(zip_bytes(SAVED_MODEL))


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "zip"])
@pytest.mark.parametrize("prefix", ["", "model/", "./"])
def test_a_saved_model_unpacks_at_the_root_or_one_level_down(
    tmp_path: Path, kind: str, prefix: str
) -> None:
    members = {prefix + name.removeprefix("model/"): data for name, data in SAVED_MODEL.items()}
    body = zip_bytes(members) if kind == "zip" else tar_bytes(list(members.items()),
                                                              gz=kind == "tar.gz")
    extract(body, tmp_path)
    found = find_saved_model(tmp_path)
    assert found == (tmp_path / "model" if prefix == "model/" else tmp_path)
    assert (found / "variables" / "variables.index").read_bytes() == b"ix"


@pytest.mark.parametrize("member, message", [
    (("../evil", b"x"), "'..' is refused"),
    (("model/../../evil", b"x"), "'..' is refused"),
    (("/tmp/evil", b"x"), "absolute paths are refused"),
    (special("model/link", tarfile.SYMTYPE, "/etc/passwd"), "links, devices and fifos"),
    (special("model/hard", tarfile.LNKTYPE, "model/saved_model.pb"), "links, devices"),
    (special("model/dev", tarfile.CHRTYPE), "links, devices and fifos"),
    (special("model/fifo", tarfile.FIFOTYPE), "links, devices and fifos"),
])
def test_hostile_tar_members_are_refused(
    tmp_path: Path, member: tarfile.TarInfo | tuple[str, bytes], message: str
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(ArchiveRefused, match=message):
        extract(tar_bytes([*SAVED_MODEL.items(), member]), target)
    assert not (tmp_path / "evil").exists()
    assert not any(p.is_symlink() for p in target.rglob("*"))


@pytest.mark.parametrize("members, symlink, message", [
    ({"../evil": b"x"}, None, "'..' is refused"),
    ({"/tmp/evil": b"x"}, None, "absolute paths are refused"),
    ({"model\\..\\evil": b"x"}, None, "backslashes"),
    ({}, "model/link", "links and special files"),
])
def test_hostile_zip_members_are_refused(
    tmp_path: Path, members: dict[str, bytes], symlink: str | None, message: str
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(ArchiveRefused, match=message):
        extract(zip_bytes({**SAVED_MODEL, **members}, symlink), target)
    assert not (tmp_path / "evil").exists()


def test_bounds_on_members_and_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "model_archive_members_max", 3)
    with pytest.raises(ArchiveRefused, match="more than 3 members"):
        extract(tar_bytes([*SAVED_MODEL.items(), ("model/extra", b"x")]), tmp_path / "a")
    monkeypatch.setattr(limits, "model_archive_members_max", 100)
    monkeypatch.setattr(limits, "model_archive_bytes_max", 64 * 1024)
    # A gzip bomb: 8 MiB of zeros compress to a few KiB; the count stops it at the bound.
    bomb = tar_bytes([("model/saved_model.pb", bytes(8 * 1024 * 1024))], gz=True)
    assert len(bomb) < 64 * 1024
    (tmp_path / "b").mkdir()
    with pytest.raises(ArchiveRefused, match="unpacks to more than 65536 bytes"):
        extract(bomb, tmp_path / "b")
    assert sum(p.stat().st_size for p in (tmp_path / "b").rglob("*") if p.is_file()) \
        <= 64 * 1024 + 1024 * 1024  # at most one copy piece past the bound
    (tmp_path / "c").mkdir()
    with pytest.raises(ArchiveRefused, match="unpacks to more than"):
        extract(zip_bytes({"model/saved_model.pb": bytes(100 * 1024)}), tmp_path / "c")


def test_malformed_and_ambiguous_archives(tmp_path: Path) -> None:
    body = tar_bytes(list(SAVED_MODEL.items()), gz=True)
    (tmp_path / "a").mkdir()
    with pytest.raises(ArchiveRefused, match="malformed tar.gz archive"):
        extract(body[: len(body) // 2], tmp_path / "a")
    with pytest.raises(ArchiveRefused, match="malformed tar.gz archive"):
        extract(gzip.compress(b"not a tar at all" * 100), tmp_path / "a")
    (tmp_path / "b").mkdir()
    extract(tar_bytes([("a/saved_model.pb", b""), ("b/saved_model.pb", b"")]), tmp_path / "b")
    with pytest.raises(ArchiveRefused, match="several directories hold a saved_model.pb: a, b"):
        find_saved_model(tmp_path / "b")
    (tmp_path / "c").mkdir()
    extract(tar_bytes([("x/y/saved_model.pb", b"")]), tmp_path / "c")
    with pytest.raises(ArchiveRefused, match="no saved_model.pb at the archive's root or one"):
        find_saved_model(tmp_path / "c")
    (tmp_path / "d").mkdir()
    with pytest.raises(ArchiveRefused, match="appears twice"):
        extract(tar_bytes([("m/saved_model.pb", b"1"), ("m/saved_model.pb", b"2")]),
                tmp_path / "d")
