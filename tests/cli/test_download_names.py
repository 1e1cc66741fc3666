"""`imagemesh download` without a server: the names it gives results, and a file that is
whole or absent (the commands against the real mesh: test_download.py)."""

from __future__ import annotations

import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from imagemesh_cli.__main__ import build_parser
from imagemesh_cli.api import Disconnected, Download
from imagemesh_cli.commands import UsageError
from imagemesh_cli.download import (
    Contents,
    Corrupt,
    Saved,
    _place,
    _save,
    result_name,
    zip_contents,
)

JOB_ID = "3f2a9c1d-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("filename", "name"),
    [
        ("holiday photo.JPG", "holiday photo-3f2a9c1d.webp"),
        ("../../etc/passwd", "passwd-3f2a9c1d.webp"),
        ("C:\\Users\\me\\cat.png", "cat-3f2a9c1d.webp"),
        (".hidden.png", "hidden-3f2a9c1d.webp"),
        ("..", "result-3f2a9c1d.webp"),
        ('a<b>:"c\x00.png', "a_b___c_-3f2a9c1d.webp"),
        (None, "result-3f2a9c1d.webp"),
        ("x" * 300 + ".png", "x" * 100 + "-3f2a9c1d.webp"),
    ],
)
def test_a_result_is_named_after_the_file_uploaded_with_no_folder(
    filename: str | None, name: str
) -> None:
    assert result_name({"id": JOB_ID, "filename": filename}, "image/webp") == name


def test_an_existing_file_keeps_its_name_however_late_it_appeared(tmp_path: Path) -> None:
    partial, target = tmp_path / ".r.part", tmp_path / "r.png"
    partial.write_bytes(b"new")
    target.write_bytes(b"theirs")
    with pytest.raises(UsageError, match="exists: not overwritten"):
        _place(partial, target, force=False)
    assert target.read_bytes() == b"theirs"
    _place(partial, target, force=True)
    assert target.read_bytes() == b"new"
    assert _names(tmp_path) == ["r.png"]


class _Broken:
    """A body that breaks off after its first chunk."""

    async def chunks(self) -> AsyncIterator[bytes]:
        yield b"half"
        raise Disconnected("the download broke off")


async def test_a_download_that_breaks_off_leaves_nothing(tmp_path: Path) -> None:
    def never(_partial: Path, _saved: Saved) -> None:
        raise AssertionError("nothing to check")

    with pytest.raises(Disconnected):
        await _save(cast(Download, _Broken()), tmp_path / "r.zip", False, never)
    assert _names(tmp_path) == []


def _names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_a_zip_short_of_erased_jobs_says_which_and_one_short_of_others_is_refused(
    tmp_path: Path,
) -> None:
    erased = "9b04e7aa-0000-4000-8000-000000000002"
    path = tmp_path / "r.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cat.png", b"png")
        archive.writestr(
            "erased.txt", f"Erased, their results deleted: not in this zip.\n{erased}\n"
        )
    assert zip_contents(path, 2) == Contents(["cat.png"], [erased])
    with pytest.raises(Corrupt, match="holds 1 results of 3"):
        zip_contents(path, 3)
    path.write_bytes(b"PK not a zip")
    with pytest.raises(Corrupt, match="not readable"):
        zip_contents(path, 1)


def test_the_command_line_takes_ids_and_where_to() -> None:
    args: Any = build_parser().parse_args(["download", "3f2a9c1d", "9b04e7aa", "-o", "x.zip"])
    assert (args.job_ids, args.output, args.zip, args.force) == (
        ["3f2a9c1d", "9b04e7aa"],
        "x.zip",
        False,
        False,
    )
