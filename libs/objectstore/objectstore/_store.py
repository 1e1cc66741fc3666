from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import Histogram
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from servicekit import timed_call

REQUEST_SECONDS = Histogram(
    "imagemesh_s3_request_seconds",
    "S3 calls, by operation (put, get, open (a download to its first byte), head, "
    "head_bucket, list, delete) and outcome (ok, "
    "not_found, exists (a conditional put found the key taken), error); a get includes "
    "reading the body.",
    ["operation", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchBucket"})
_ALREADY_THERE = frozenset({"PreconditionFailed", "412"})


class S3Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    s3_url: str = "http://127.0.0.1:9000"
    s3_access_key: str = "imagemesh-dev"
    s3_secret_key: SecretStr
    s3_region: str = "us-east-1"
    s3_input_bucket: str = Field(default="imagemesh-input", min_length=3, max_length=63)
    s3_output_bucket: str = Field(default="imagemesh-output", min_length=3, max_length=63)
    s3_timeout_seconds: float = Field(default=10.0, gt=0)
    """Connect and read timeout per S3 request; an unresponsive S3 is a transient error."""


class ObjectNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class StoredObject:
    bucket: str
    key: str
    size: int

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class Download:
    """An object being read: its length first, then its body a chunk at a time."""

    size: int
    chunks: AsyncIterator[bytes]


DOWNLOAD_CHUNK_BYTES = 256 * 1024
"""What one download holds in memory at a time: a slow reader costs this, not the object."""


class ObjectStore:
    """The gateway to S3: one client per process, opened by `open_store`."""

    def __init__(self, client: Any) -> None:
        self._client = client

    async def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str,
        metadata: dict[str, str] | None = None,
    ) -> None:
        with _timed("put"):
            await self._client.put_object(
                Bucket=bucket, Key=key, Body=data, ContentType=content_type, Metadata=metadata or {}
            )

    async def put_file(
        self,
        bucket: str,
        key: str,
        file: BinaryIO,
        *,
        size: int,
        content_type: str,
        metadata: dict[str, str] | None = None,
        if_absent: bool = False,
    ) -> bool:
        """Store `size` bytes of `file`, read from where it stands, without holding them in
        memory: the request body streams from the file (aiohttp reads it in chunks off the
        event loop), so a large upload costs a chunk of memory, not its size.

        With `if_absent`, only when no object has that key (`If-None-Match: *`, one request
        where a HEAD and a PUT took two): False when one had it already (412), which is
        left as it was. True when this call stored it."""
        condition = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            with _timed("put"):
                await self._client.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=file,
                    ContentLength=size,
                    ContentType=content_type,
                    Metadata=metadata or {},
                    **condition,
                )
        except ClientError as exc:
            if if_absent and _code(exc) in _ALREADY_THERE:
                return False
            raise
        return True

    async def get(self, bucket: str, key: str) -> bytes:
        try:
            with _timed("get"):
                response = await self._client.get_object(Bucket=bucket, Key=key)
                async with response["Body"] as body:
                    data: bytes = await body.read()
        except ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404"}:
                raise ObjectNotFound(f"s3://{bucket}/{key}") from exc
            raise
        return data

    @asynccontextmanager
    async def download(
        self, bucket: str, key: str, *, chunk_bytes: int = DOWNLOAD_CHUNK_BYTES
    ) -> AsyncIterator[Download]:
        """The object's size and body in chunks of at most `chunk_bytes`, read as they are
        consumed; the connection is given back when the block ends."""
        try:
            with _timed("open"):
                response = await self._client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404"}:
                raise ObjectNotFound(f"s3://{bucket}/{key}") from exc
            raise
        body = response["Body"]
        async with body:  # gives the connection back, read to the end or not
            yield Download(int(response["ContentLength"]), body.iter_chunks(chunk_bytes))

    async def metadata(self, bucket: str, key: str) -> dict[str, str]:
        """The object's user metadata (`x-amz-meta-*`, names lower-cased)."""
        try:
            with _timed("head"):
                response = await self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                raise ObjectNotFound(f"s3://{bucket}/{key}") from exc
            raise
        return {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}

    async def delete(self, bucket: str, key: str) -> None:
        """Delete an object. Idempotent, as S3's DELETE is: a key that is not there (any
        more) is no error, so an erasure that was interrupted is simply done again."""
        try:
            with _timed("delete"):
                await self._client.delete_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) not in {"NoSuchKey", "404", "NotFound"}:
                raise

    async def objects(self, bucket: str, prefix: str = "") -> AsyncIterator[StoredObject]:
        """Every object in a bucket (under `prefix`), page by page."""
        paginator = self._client.get_paginator("list_objects_v2")
        pages = aiter(paginator.paginate(Bucket=bucket, Prefix=prefix))
        while True:
            with _timed("list"):
                page = await anext(pages, None)
            if page is None:
                return
            for item in page.get("Contents", []):
                yield StoredObject(bucket, item["Key"], int(item["Size"]))

    async def ping(self, bucket: str) -> bool:
        """True when the bucket answers (readiness)."""
        try:
            with _timed("head_bucket"):
                await self._client.head_bucket(Bucket=bucket)
        except (ClientError, BotoCoreError):
            return False
        return True


@asynccontextmanager
async def open_store(settings: S3Settings) -> AsyncIterator[ObjectStore]:
    session = aioboto3.Session()
    config = Config(
        s3={"addressing_style": "path"},
        # boto3 >= 1.36 sends new default checksums that S3-compatible servers reject.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        # Few quick retries here: the message broker's delayed retries handle long outages.
        retries={"max_attempts": 2, "mode": "standard"},
        connect_timeout=settings.s3_timeout_seconds,
        read_timeout=settings.s3_timeout_seconds,
    )
    async with session.client(
        "s3",
        endpoint_url=settings.s3_url,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key.get_secret_value(),
        region_name=settings.s3_region,
        config=config,
    ) as client:
        yield ObjectStore(client)


def _outcome(exc: Exception) -> str:
    code = _code(exc) if isinstance(exc, ClientError) else ""
    return "not_found" if code in _NOT_FOUND else "exists" if code in _ALREADY_THERE else "error"


@contextmanager
def _timed(operation: str) -> Iterator[None]:
    """Observe one S3 call in REQUEST_SECONDS (synchronous: costs no extra await)."""
    with timed_call(REQUEST_SECONDS, operation, _outcome):
        yield


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
