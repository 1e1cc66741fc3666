from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


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
        await self._client.put_object(
            Bucket=bucket, Key=key, Body=data, ContentType=content_type, Metadata=metadata or {}
        )

    async def get(self, bucket: str, key: str) -> bytes:
        try:
            response = await self._client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in {"NoSuchKey", "404"}:
                raise ObjectNotFound(f"s3://{bucket}/{key}") from exc
            raise
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data

    async def exists(self, bucket: str, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise
        return True

    async def metadata(self, bucket: str, key: str) -> dict[str, str]:
        """The object's user metadata (`x-amz-meta-*`, names lower-cased)."""
        try:
            response = await self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                raise ObjectNotFound(f"s3://{bucket}/{key}") from exc
            raise
        return {str(k).lower(): str(v) for k, v in (response.get("Metadata") or {}).items()}

    async def objects(self, bucket: str, prefix: str = "") -> AsyncIterator[StoredObject]:
        """Every object in a bucket (under `prefix`), page by page."""
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                yield StoredObject(bucket, item["Key"], int(item["Size"]))

    async def ping(self, bucket: str) -> bool:
        """True when the bucket answers (readiness)."""
        try:
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


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
