"""`imagemesh download` as a user runs it (a subprocess), against the real mesh: one result
saved with the bytes S3 holds, two as one zip, the jobs it refuses (unknown, not finished,
failed, cancelled) and the files it never overwrites unasked."""

from __future__ import annotations

import asyncio
import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from imagemesh_cli.render import format_bytes
from objectstore import S3Settings, open_store
from tests.conftest import Mesh, settings_from
from tests.e2e.helpers import photo, submit, wait_finished

from .test_e2e import imagemesh, make_image

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

THUMBNAIL_PNG = json.dumps([{"op": "thumbnail", "width": 64}, {"op": "convert", "format": "png"}])
THUMBNAIL = json.dumps([{"op": "thumbnail", "width": 48}])
FAILS = json.dumps([{"op": "crop", "x": 400, "y": 0, "width": 40, "height": 40}])
"""Out of a 320x240 image: the job fails."""
SLOW = json.dumps([{"op": "blur", "sigma": 100}] * 2 + [{"op": "convert", "format": "png"}])
"""~6 s of imageproc's work on 6 MP (as tests/e2e/test_cancel.py): still running when the
CLI asks for its result a second after it was accepted."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def cli(mesh: Mesh, *args: str | Path, cwd: Path) -> tuple[int, str, str]:
    run = await asyncio.to_thread(imagemesh, mesh, *args, cwd=cwd)
    return run.returncode, run.stdout, run.stderr


async def accepted(
    http: aiohttp.ClientSession, mesh: Mesh, pipeline: str, filename: str, size: int = 320
) -> str:
    data = photo(size, size * 3 // 4, "PNG" if filename.endswith(".png") else "JPEG")
    response = await submit(http, mesh.upload_url, data, pipeline, filename=filename)
    assert response.status == 202, await response.text()
    return str((await response.json())["id"])


async def finished(
    http: aiohttp.ClientSession, mesh: Mesh, pipeline: str, filename: str
) -> dict[str, Any]:
    job_id = await accepted(http, mesh, pipeline, filename)
    return await wait_finished(http, mesh.upload_url, job_id)


async def stored_output(mesh: Mesh, job_id: str) -> bytes:
    """The job's output as S3 holds it (the one object under its id in the output bucket)."""
    settings = settings_from(mesh.env, S3Settings)
    async with open_store(settings) as store:
        found = [o async for o in store.objects(settings.s3_output_bucket, f"{job_id}/")]
        assert len(found) == 1, found
        return await store.get(found[0].bucket, found[0].key)


def files_in(folder: Path) -> list[str]:
    """Every name in `folder`, hidden ones too (a temporary `.part` left behind shows)."""
    return sorted(path.name for path in folder.iterdir())


async def test_one_result_is_saved_as_submit_saves_it_with_the_bytes_s3_holds(
    mesh: Mesh, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    image = make_image(tmp_path / "holiday photo.jpg", (320, 240), "JPEG")
    ops = ("--op", "thumbnail:width=64", "--op", "convert:format=png")
    code, out, err = await cli(mesh, "submit", image, *ops, "--wait", "-o", "sub", cwd=tmp_path)
    assert code == 0, err
    job_id = out.split()[0]
    job = await wait_finished(http, mesh.upload_url, job_id)
    short, name = job_id[:8], f"holiday photo-{job_id[:8]}.png"
    assert (job["status"], job["filename"]) == ("succeeded", "holiday photo.jpg")

    code, out, err = await cli(mesh, "download", short, cwd=tmp_path)
    assert code == 0, err
    assert files_in(tmp_path) == [name, "holiday photo.jpg", "sub"]
    assert (
        out
        == f"saved {name} ({format_bytes(job['output']['bytes'])}), the result of job {job_id}\n"
    )
    saved = (tmp_path / name).read_bytes()
    assert saved == (tmp_path / "sub" / name).read_bytes()
    assert sha256(saved) == job["output"]["sha256"] == sha256(await stored_output(mesh, job_id))

    folder = tmp_path / "out"
    code, out, err = await cli(mesh, "download", job_id, "-o", f"{folder}/", "--json", cwd=tmp_path)
    assert code == 0, err
    record = json.loads(out)
    assert record == {
        "event": "saved",
        "job_id": job_id,
        "path": str(folder / name),
        "bytes": len(saved),
        "sha256": job["output"]["sha256"],
        "content_type": "image/png",
    }


async def test_an_existing_file_is_kept_unless_forced(
    mesh: Mesh, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    job = await finished(http, mesh, THUMBNAIL, "mine.jpg")
    target = tmp_path / "result.jpg"
    target.write_bytes(b"mine")
    code, _out, err = await cli(mesh, "download", job["id"], "-o", target, cwd=tmp_path)
    assert (code, err) == (
        2,
        f"imagemesh: {target} exists: not overwritten (--force replaces it)\n",
    )
    assert target.read_bytes() == b"mine"
    code, _out, err = await cli(mesh, "download", job["id"], "-o", target, "--force", cwd=tmp_path)
    assert code == 0, err
    assert sha256(target.read_bytes()) == job["output"]["sha256"]
    assert files_in(tmp_path) == ["result.jpg"]


async def test_two_results_become_one_zip(
    mesh: Mesh, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    cat, dog = await asyncio.gather(
        finished(http, mesh, THUMBNAIL_PNG, "cat.jpg"), finished(http, mesh, THUMBNAIL, "dog.jpg")
    )
    assert (cat["status"], dog["status"]) == ("succeeded", "succeeded")
    code, out, err = await cli(mesh, "download", cat["id"][:8], dog["id"], cwd=tmp_path)
    assert code == 0, err
    assert files_in(tmp_path) == ["imagemesh-results.zip"]
    assert out.startswith("saved imagemesh-results.zip (")
    assert out.endswith("): 2 results\n")
    with zipfile.ZipFile(tmp_path / "imagemesh-results.zip") as archive:
        assert archive.namelist() == ["cat.png", "dog.jpg"]
        assert sha256(archive.read("cat.png")) == cat["output"]["sha256"]
        assert sha256(archive.read("dog.jpg")) == dog["output"]["sha256"]

    code, out, err = await cli(mesh, "download", cat["id"], "--zip", "-o", "one.zip", "--json",
                               cwd=tmp_path)  # fmt: skip
    assert code == 0, err
    record = json.loads(out)
    assert (record["path"], record["entries"], record["job_ids"]) == ("one.zip", ["cat.png"],
                                                                      [cat["id"]])  # fmt: skip
    code, _out, err = await cli(mesh, "download", cat["id"], dog["id"], cwd=tmp_path)
    assert code == 2
    assert "imagemesh-results.zip exists: not overwritten" in err


async def test_jobs_without_a_result_are_refused_naming_them(
    mesh: Mesh, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    slow = await accepted(http, mesh, SLOW, "slow.jpg", size=3000)
    code, _out, err = await cli(mesh, "download", slow, cwd=tmp_path)
    assert code == 1, err
    assert err in {
        f"imagemesh: job {slow}: the job is {status}; try again later\n"
        for status in ("queued", "processing")
    }
    async with http.post(f"{mesh.upload_url}/api/v1/jobs/{slow}/cancel") as response:
        assert response.status == 202, await response.text()
    failed, done = await asyncio.gather(
        finished(http, mesh, FAILS, "small.jpg"), finished(http, mesh, THUMBNAIL, "fine.jpg")
    )
    cancelled = await wait_finished(http, mesh.upload_url, slow, timeout=120)
    assert (failed["status"], cancelled["status"]) == ("failed", "cancelled")

    code, out, err = await cli(mesh, "download", failed["id"], "--json", cwd=tmp_path)
    assert code == 1
    assert err.startswith(f"imagemesh: job {failed['id']}: the job failed: ")
    assert json.loads(out)["error"]["code"] == "job_failed"
    code, _out, err = await cli(mesh, "download", slow, cwd=tmp_path)
    assert (code, err) == (1, f"imagemesh: job {slow}: the job was cancelled by local\n")
    code, _out, err = await cli(mesh, "download", done["id"], slow, failed["id"], cwd=tmp_path)
    assert code == 1, err
    assert err.endswith(f"failed: {failed['id']}; cancelled: {slow}\n"), err
    unknown = "00000000-0000-4000-8000-0000000000d1"
    code, _out, err = await cli(mesh, "download", unknown, cwd=tmp_path)
    assert (code, err) == (1, f"imagemesh: no job {unknown}\n")
    code, _out, err = await cli(mesh, "download", done["id"], unknown, cwd=tmp_path)
    assert (code, err) == (1, f"imagemesh: no job {unknown}\n")
    assert files_in(tmp_path) == []


async def test_an_erased_job_is_gone_and_a_zip_says_it_left_it_out(
    mesh: Mesh, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    kept, erased = await asyncio.gather(
        finished(http, mesh, THUMBNAIL, "kept.jpg"), finished(http, mesh, THUMBNAIL, "gone.jpg")
    )
    async with http.delete(f"{mesh.upload_url}/api/v1/jobs/{erased['id']}") as response:
        assert response.status == 204, await response.text()

    code, out, err = await cli(mesh, "download", erased["id"], "--json", cwd=tmp_path)
    assert code == 1
    assert err.startswith("imagemesh: "), err
    assert erased["id"] in err
    assert json.loads(out)["error"]["code"] == "gone"
    assert files_in(tmp_path) == []

    code, out, err = await cli(mesh, "download", kept["id"], erased["id"], cwd=tmp_path)
    assert code == 1
    assert out == ""
    assert err.endswith(f"erased, their results deleted (not in the zip): {erased['id']}\n")
    with zipfile.ZipFile(tmp_path / "imagemesh-results.zip") as archive:
        assert archive.namelist() == ["kept.jpg", "erased.txt"]
        assert sha256(archive.read("kept.jpg")) == kept["output"]["sha256"]
