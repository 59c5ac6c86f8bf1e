"""The S3 implementation of ``ArchiveTarget``: any endpoint (AWS, MinIO, moto), multipart, SSE."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from consumers.archive.targets import MIN_PART_BYTES, ArchiveTargetError, ObjectWriter
from pipeline.errors import AgentwatchError, ConfigError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from pipeline.settings import S3Settings


_TRANSIENT_CODES = {
    "InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "Throttling",
    "ThrottlingException", "RequestTimeTooSkewed", "503", "500", "502", "504",
}


def _s3_error(action: str, exc: Exception) -> AgentwatchError:
    """Map a botocore failure onto our hierarchy: network and 5xx retry, the rest does not."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _TRANSIENT_CODES or status >= 500:
            return TransientError(f"S3 {action} failed ({code or status}): {exc}")
        return ArchiveTargetError(f"S3 {action} refused ({code or status}): {exc}")
    if isinstance(exc, BotoCoreError):
        return TransientError(f"S3 {action} failed: {exc}")
    return TransientError(f"S3 {action} failed: {type(exc).__name__}: {exc}")


def _is_missing(exc: Exception) -> bool:
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", ""))
    return code in {"NoSuchKey", "404", "NotFound"}


class S3Target:
    """Objects under ``s3://bucket/prefix`` through any S3 endpoint (AWS, MinIO, moto).

    Objects larger than ``multipart_threshold`` go up as multipart uploads in parts of
    ``part_size`` bytes; server-side encryption settings are sent with every write.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        prefix: str = "",
        *,
        sse: str = "",
        sse_kms_key_id: str | None = None,
        multipart_threshold: int = 8 * 1024 * 1024,
        part_size: int = 8 * 1024 * 1024,
    ) -> None:
        if part_size < MIN_PART_BYTES:
            raise ConfigError(f"S3 multipart part size must be at least {MIN_PART_BYTES} bytes")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.multipart_threshold = max(multipart_threshold, part_size)
        self._sse: dict[str, str] = {}
        if sse:
            self._sse["ServerSideEncryption"] = sse
        if sse_kms_key_id:
            self._sse["SSEKMSKeyId"] = sse_kms_key_id

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def full_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (local stacks and tests; production has one)."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except Exception as exc:
            if not _is_missing(exc) and "NoSuchBucket" not in str(exc):
                raise _s3_error("head_bucket", exc) from exc
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except Exception as exc:
            raise _s3_error("create_bucket", exc) from exc

    def put(self, key: str, data: bytes) -> None:
        if len(data) > self.multipart_threshold:
            writer = self.open_writer(key)
            try:
                writer.write(data)
            except BaseException:
                writer.abort()
                raise
            writer.close()
            return
        self._put_object(self.full_key(key), data)

    def _put_object(self, full_key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=full_key, Body=data, **self._sse)  # type: ignore[arg-type]
        except Exception as exc:
            raise _s3_error(f"put {full_key}", exc) from exc

    def get(self, key: str) -> bytes | None:
        full = self.full_key(key)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=full)
            return resp["Body"].read()
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise _s3_error(f"get {full}", exc) from exc

    def list_keys(self, prefix: str) -> list[str]:
        full = self.full_key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=full
            )
            for page in pages:
                keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        except Exception as exc:
            raise _s3_error(f"list {full}", exc) from exc
        return sorted(keys)

    def delete(self, keys: Iterable[str]) -> None:
        batch = [self.full_key(k) for k in keys]
        for start in range(0, len(batch), 1000):
            chunk = batch[start:start + 1000]
            try:
                resp = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            except Exception as exc:
                raise _s3_error("delete", exc) from exc
            errors = resp.get("Errors", [])
            if errors:
                raise TransientError(f"S3 delete left {len(errors)} objects: {errors[0]}")

    def open_writer(self, key: str) -> ObjectWriter:
        return _S3Writer(self, self.full_key(key))

    # multipart steps, used by _S3Writer

    def _create_upload(self, full_key: str) -> str:
        try:
            resp = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=full_key, **self._sse  # type: ignore[arg-type]
            )
        except Exception as exc:
            raise _s3_error(f"create_multipart_upload {full_key}", exc) from exc
        return resp["UploadId"]

    def _upload_part(self, full_key: str, upload_id: str, number: int, data: bytes) -> str:
        try:
            resp = self.client.upload_part(
                Bucket=self.bucket, Key=full_key, UploadId=upload_id, PartNumber=number, Body=data
            )
        except Exception as exc:
            raise _s3_error(f"upload_part {full_key}#{number}", exc) from exc
        return resp["ETag"]

    def _complete(self, full_key: str, upload_id: str, etags: list[str]) -> None:
        parts: Any = [{"ETag": etag, "PartNumber": i} for i, etag in enumerate(etags, start=1)]
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=full_key, UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except Exception as exc:
            raise _s3_error(f"complete_multipart_upload {full_key}", exc) from exc

    def _abort(self, full_key: str, upload_id: str) -> None:
        # Best effort: an upload left behind is invisible and a bucket lifecycle rule reaps it.
        with contextlib.suppress(Exception):
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload_id)


class _S3Writer:
    """Buffers up to one part; switches to a multipart upload once the object outgrows it."""

    def __init__(self, target: S3Target, full_key: str) -> None:
        self._t = target
        self._key = full_key
        self._buf = io.BytesIO()
        self._upload_id: str | None = None
        self._etags: list[str] = []
        self._done = False

    def write(self, data: bytes, /) -> int:
        self._buf.write(data)
        if self._buf.tell() >= self._t.multipart_threshold or (
            self._upload_id is not None and self._buf.tell() >= self._t.part_size
        ):
            self._flush_parts()
        return len(data)

    def _flush_parts(self) -> None:
        data = self._buf.getvalue()
        size = self._t.part_size
        if self._upload_id is None:
            self._upload_id = self._t._create_upload(self._key)
        cut = len(data) - len(data) % size
        for start in range(0, cut, size):
            self._etags.append(
                self._t._upload_part(self._key, self._upload_id, len(self._etags) + 1,
                                     data[start:start + size])
            )
        self._buf = io.BytesIO()
        self._buf.write(data[cut:])

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._done:
            return
        try:
            rest = self._buf.getvalue()
            if self._upload_id is None:
                self._t._put_object(self._key, rest)
            else:
                if rest or not self._etags:
                    self._etags.append(self._t._upload_part(
                        self._key, self._upload_id, len(self._etags) + 1, rest))
                self._t._complete(self._key, self._upload_id, self._etags)
        except BaseException:
            self.abort()
            raise
        self._done = True

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        if self._upload_id is not None:
            self._t._abort(self._key, self._upload_id)


def s3_client(s3: S3Settings, *, connect_timeout: float = 5.0, read_timeout: float = 30.0,
              max_attempts: int = 3) -> S3Client:
    """A boto3 S3 client for the configured endpoint, with bounded timeouts and retries."""
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=s3.region,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        # Path-style works with every S3 clone (moto, MinIO) and with AWS.
        s3={"addressing_style": "path"},
    )
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url or None,
        aws_access_key_id=s3.access_key_id.get_secret_value(),
        aws_secret_access_key=s3.secret_access_key.get_secret_value(),
        config=config,
    )


