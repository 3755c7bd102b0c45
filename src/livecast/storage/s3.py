"""S3-compatible object storage (AWS, MinIO, Ceph, R2...) through boto3.

URL form: ``s3://bucket/optional/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1``.
Credentials come from the usual AWS environment variables or config files, which is what
operators of S3-compatible services already have. boto3 is synchronous; calls run in threads
so the event loop never waits on the network.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

from livecast.storage import check_key


class S3Store:
    def __init__(self, url: str) -> None:
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError("s3 storage URL needs a bucket: s3://bucket?endpoint=...")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=query.get("endpoint") or None,
            region_name=query.get("region", "us-east-1"),
            config=Config(retries={"max_attempts": 4, "mode": "standard"}, max_pool_connections=32,
                          s3={"addressing_style": query.get("addressing", "path")}),
        )

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    async def _call(self, fn: Any, /, **kwargs: Any) -> Any:
        return await asyncio.to_thread(partial(fn, **kwargs))

    async def ensure_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            await self._call(self.client.head_bucket, Bucket=self.bucket)
        except ClientError:
            await self._call(self.client.create_bucket, Bucket=self.bucket)

    async def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        await self._call(self.client.put_object, Bucket=self.bucket, Key=self._key(key), Body=data,
                         ContentType=content_type)

    async def get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            resp = await self._call(self.client.get_object, Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise
        body: bytes = await asyncio.to_thread(resp["Body"].read)
        return body

    async def delete(self, key: str) -> None:
        await self._call(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    async def list(self, prefix: str = "") -> Any:
        full = (self.prefix + "/" if self.prefix else "") + prefix
        keys: list[str] = []
        token: str | None = None
        strip = len(self.prefix) + 1 if self.prefix else 0
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": full}
            if token:
                kwargs["ContinuationToken"] = token
            resp = await self._call(self.client.list_objects_v2, **kwargs)
            keys.extend(obj["Key"][strip:] for obj in resp.get("Contents", []))
            if not resp.get("IsTruncated"):
                return sorted(keys)
            token = resp.get("NextContinuationToken")

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.list(prefix)
        for i in range(0, len(keys), 1000):
            batch = [{"Key": self._key(k)} for k in keys[i : i + 1000]]
            await self._call(self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": batch})
        return len(keys)
