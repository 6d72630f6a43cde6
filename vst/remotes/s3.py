"""A volume in an S3 bucket under a prefix: ``s3://BUCKET/PREFIX`` (AWS, SeaweedFS, MinIO, Ceph...).

boto3 is imported only when an S3Volume is made, so commands that never touch S3 do not pay
for it. Credentials come from boto3's usual chain (environment, ``~/.aws``, instance roles) or
from the caller; the volume keeps none of them, and nothing here writes them anywhere.

Every botocore/boto3 exception is translated into a VstError at this boundary (see
``_translate``): nothing above this module sees a ``ClientError``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar

from vst.errors import (
    AccessDenied,
    NotFound,
    UsageError,
    VolumeFull,
    VolumeIOError,
    VolumeUnreachable,
    VstError,
    from_os_error,
)
from vst.remotes.volume import Volume, VolumeInfo, check_name

MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNKSIZE = 16 * 1024 * 1024
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60
MAX_ATTEMPTS = 3

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
_DENIED_CODES = {"403", "AccessDenied", "Forbidden", "SignatureDoesNotMatch",
                 "InvalidAccessKeyId", "InvalidToken", "ExpiredToken", "AllAccessDisabled"}
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}
_FULL_CODES = {"QuotaExceeded", "XMinioStorageFull", "EntityTooLarge"}

T = TypeVar("T")


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split ``s3://BUCKET/PREFIX`` into the bucket and the prefix ('' for none)."""
    if not url.startswith("s3://"):
        raise UsageError(f"not an S3 volume URL: '{url}'", hint="use s3://BUCKET/PREFIX")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not _BUCKET.match(bucket):
        raise UsageError(f"invalid S3 bucket name '{bucket}' in '{url}'")
    prefix = prefix.strip("/")
    if prefix:
        check_name(prefix)
    return bucket, prefix


class S3Volume(Volume):
    """``access_key``/``secret_key`` are for callers that hold keys themselves (tests);
    they go to boto3 and are not kept on the volume. ``multipart_threshold`` and
    ``list_page_size`` exist so tests can exercise multipart uploads and pagination
    cheaply."""

    remote = True

    def __init__(self, url: str, *, endpoint_url: str | None = None,
                 region: str | None = None, profile: str | None = None,
                 access_key: str | None = None, secret_key: str | None = None,
                 multipart_threshold: int = MULTIPART_THRESHOLD,
                 list_page_size: int | None = None) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self.endpoint_url = endpoint_url
        self.multipart_threshold = multipart_threshold
        self.list_page_size = list_page_size
        self._bucket_seen = False
        self._conditional_put = True
        from botocore.exceptions import BotoCoreError

        try:
            self._client = _make_client(endpoint_url, region, profile, access_key, secret_key)
        except BotoCoreError as exc:
            raise self._translate(exc, "cannot open volume") from exc

    # -- helpers --------------------------------------------------------------------

    def _key(self, name: str) -> str:
        check_name(name)
        return f"{self.prefix}/{name}" if self.prefix else name

    def _guard(self, what: str, call: Callable[[], T]) -> T:
        """Run one request, translating boto errors; a success proves the bucket exists."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            result = call()
        except (ClientError, BotoCoreError) as exc:
            raise self._translate(exc, what) from exc
        self._bucket_seen = True
        return result

    def _translate(self, exc: BaseException, what: str) -> VstError:
        from botocore import exceptions as bx

        where = f"{what} on volume '{self.url}'"
        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return self._no_bucket()
            if code in _DENIED_CODES or status == 403:
                return AccessDenied(f"{where}: access denied ({code})",
                                    hint="check the credentials and the bucket's policy")
            if code in _MISSING_CODES or status == 404:
                return NotFound(f"{where}: not found")
            if code in _FULL_CODES:
                return VolumeFull(f"{where}: {code}")
            return VolumeIOError(f"{where}: {code or status} {error.get('Message', '')}".rstrip())
        if isinstance(exc, bx.ConnectionError | bx.ReadTimeoutError | bx.ConnectionClosedError):
            return VolumeUnreachable(f"{where}: cannot reach {self.endpoint_url or 'S3'}: {exc}")
        if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError
                      | bx.ProfileNotFound):
            return AccessDenied(f"{where}: {exc}")
        return VolumeIOError(f"{where}: {exc}")

    def _no_bucket(self) -> VolumeUnreachable:
        return VolumeUnreachable(f"volume '{self.url}' is not reachable: bucket "
                                 f"'{self.bucket}' does not exist",
                                 hint="create the bucket, or check the URL and endpoint")

    def _missing(self, name: str) -> NotFound:
        # HEAD answers a bare 404 for a missing bucket as for a missing key: tell them apart
        # once per volume, so `exists` stays one request once the bucket is known.
        if not self._bucket_seen:
            self.info()
        return NotFound(f"'{name}' not found on volume '{self.url}'")

    # -- the Volume interface -------------------------------------------------------

    def load(self, name: str, offset: int = 0, size: int | None = None) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(name)
        if size == 0:
            self.size(name)
            return b""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if size is not None:
            args["Range"] = f"bytes={offset}-{offset + size - 1}"
        elif offset:
            args["Range"] = f"bytes={offset}-"
        try:
            response = self._client.get_object(**args)
            data: bytes = response["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "InvalidRange":
                # 416: the key exists (a missing one answers NoSuchKey first) but the range
                # starts at or past its end, empty objects included: nothing to return.
                return b""
            if code in ("NoSuchKey", "404"):
                raise self._missing(name) from None
            raise self._translate(exc, f"cannot read '{name}'") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, f"cannot read '{name}'") from exc
        self._bucket_seen = True
        return data

    def store(self, name: str, data: bytes | bytearray | memoryview, *,
              overwrite: bool = True) -> bool:
        return self._put(name, data if isinstance(data, bytes) else bytes(data), overwrite)

    def _put(self, name: str, body: bytes | BinaryIO, overwrite: bool) -> bool:
        """One PUT of ``body`` (bytes, or a file read from its start on each attempt, so
        that a pack is streamed rather than held in memory)."""
        from botocore.exceptions import ClientError

        key = self._key(name)
        what = f"cannot write '{name}'"

        def put(**condition: str) -> None:
            if not isinstance(body, bytes):
                body.seek(0)
            self._guard(what, lambda: self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, **condition))

        if overwrite:
            put()
            return True
        if self._conditional_put:
            try:
                put(IfNoneMatch="*")
                return True
            except VstError as exc:
                cause = exc.__cause__
                status = (cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                          if isinstance(cause, ClientError) else None)
                if status == 412:
                    return False
                if status == 409:
                    # A concurrent conditional write to the same key (AWS asks to retry):
                    # whichever finished, the name now holds a complete object or none.
                    if self.exists(name):
                        return False
                    raise
                if status != 501:
                    raise
                self._conditional_put = False
        # A server without conditional puts: look, then write. Two writers can both see
        # nothing and both write; for packs (named by the hash of their bytes) both write the
        # same bytes, so the race only matters to callers that rely on first-writer-wins.
        if self.exists(name):
            return False
        put()
        return True

    def store_file(self, name: str, path: str, *, take: bool = False) -> bool:
        import os

        if os.path.getsize(path) < self.multipart_threshold:
            try:
                with open(path, "rb") as f:
                    return self._put(name, f, overwrite=False)
            except OSError as exc:
                raise from_os_error(exc, f"cannot read '{path}'") from exc
        key = self._key(name)
        # s3transfer does not pass If-None-Match through to multipart uploads, so large
        # files are checked first; the race is the one store() documents for old servers.
        if self.exists(name):
            return False
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        config = TransferConfig(multipart_threshold=self.multipart_threshold,
                                multipart_chunksize=max(MULTIPART_CHUNKSIZE // 4,
                                                        min(MULTIPART_CHUNKSIZE,
                                                            self.multipart_threshold)))

        def upload() -> None:
            with create_transfer_manager(self._client, config) as manager:
                manager.upload(path, self.bucket, key).result()

        self._guard(f"cannot write '{name}'", upload)
        return True

    def size(self, name: str) -> int:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self._key(name)
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in _MISSING_CODES or code == "NoSuchKey":
                raise self._missing(name) from None
            raise self._translate(exc, f"cannot stat '{name}'") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, f"cannot stat '{name}'") from exc
        self._bucket_seen = True
        return int(response["ContentLength"])

    def delete(self, name: str) -> None:
        key = self._key(name)
        # S3 answers 204 whether or not the key existed: idempotent as the contract asks.
        self._guard(f"cannot delete '{name}'",
                    lambda: self._client.delete_object(Bucket=self.bucket, Key=key))

    def list(self, prefix: str = "") -> Iterator[str]:
        if prefix:
            check_name(prefix.rstrip("/"))
        base = f"{self.prefix}/" if self.prefix else ""
        paging: dict[str, Any] = {}
        if self.list_page_size:
            paging["PageSize"] = self.list_page_size
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=base + prefix, PaginationConfig=paging)
        iterator = iter(pages)
        while True:
            page = self._guard("cannot list", lambda: next(iterator, None))
            if page is None:
                return
            for entry in page.get("Contents", ()):
                name = entry["Key"][len(base):]
                # Folder markers ("dir/") made by other tools are not objects.
                if name and not name.endswith("/"):
                    yield name

    def info(self) -> VolumeInfo:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise self._no_bucket() from None
            raise self._translate(exc, "cannot open bucket") from exc
        except BotoCoreError as exc:
            raise self._translate(exc, "cannot open bucket") from exc
        self._bucket_seen = True
        return VolumeInfo(self.url, "s3", None)


def _make_client(endpoint_url: str | None, region: str | None, profile: str | None,
                 access_key: str | None, secret_key: str | None) -> Any:
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(profile_name=profile, aws_access_key_id=access_key,
                                    aws_secret_access_key=secret_key, region_name=region)
    # Retries here are botocore's own for throttling and transient errors; a short connect
    # timeout makes a dead endpoint fail in seconds rather than minutes.
    # Over plain http SigV4 signs a SHA-256 of every body, for the server to check: a
    # CRC32 on top only costs CPU (a tenth of an upload's). Over https bodies are not
    # hashed for the signature, so the CRC32 is what the server checks them against.
    plain_http = endpoint_url is not None and endpoint_url.lower().startswith("http://")
    config = Config(retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
                    connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                    s3={"addressing_style": "path"} if endpoint_url else None,
                    request_checksum_calculation="when_required" if plain_http
                    else "when_supported")
    return session.client("s3", endpoint_url=endpoint_url, config=config)
