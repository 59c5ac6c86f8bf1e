"""Where recordings live: a small object-store Protocol, the folder implementation, ``open_target``.

The S3 implementation is ``consumers.archive.s3_target``.

Both give the same guarantees the sink relies on: an object is visible only once it is complete
(atomic rename on disk, single PUT or completed multipart upload on S3), ``put`` returns only once
the object is durable, writing a key again replaces it, and deleting a missing key is no error.
Calls block: async callers run them in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

from pipeline.errors import AgentwatchError, ConfigError, TransientError

if TYPE_CHECKING:
    from pipeline.settings import ArchiveSettings, S3Settings

_TMP_PREFIX = ".tmp-"
MIN_PART_BYTES = 5 * 1024 * 1024
"""S3's smallest multipart part (all but the last)."""


class ArchiveTargetError(AgentwatchError):
    """The target refused an operation for a reason retrying will not fix (no bucket, denied)."""


class ObjectWriter(Protocol):
    """A streaming upload: nothing is visible under the key until ``close`` returns."""

    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None:
        """No-op; lets gzip stream into a writer."""
        ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


@runtime_checkable
class ArchiveTarget(Protocol):
    """The object store the archive writes to; keys are ``/``-separated relative paths."""

    def describe(self) -> str: ...

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or ``None`` if there is no such key."""
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """Every key starting with ``prefix``, sorted."""
        ...

    def delete(self, keys: Iterable[str]) -> None: ...

    def open_writer(self, key: str) -> ObjectWriter: ...


@contextlib.contextmanager
def writing(target: ArchiveTarget, key: str) -> Iterator[ObjectWriter]:
    """``with writing(t, key) as w:`` publishes on success and aborts on any exception."""
    writer = target.open_writer(key)
    try:
        yield writer
    except BaseException:
        writer.abort()
        raise
    writer.close()


# -- folder --------------------------------------------------------------------------------


class FileTarget:
    """Objects as files under a root folder, each written to a temp file, fsynced, renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def describe(self) -> str:
        return self.root.as_uri()

    def _path(self, key: str) -> Path:
        parts = [p for p in key.split("/") if p]
        if not parts or any(p in {".", ".."} or p.startswith(_TMP_PREFIX) for p in parts):
            raise ArchiveTargetError(f"invalid archive key {key!r}")
        return self.root.joinpath(*parts)

    def put(self, key: str, data: bytes) -> None:
        writer = self.open_writer(key)
        try:
            writer.write(data)
        except BaseException:
            writer.abort()
            raise
        writer.close()

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransientError(f"cannot read {key} under {self.root}: {exc}") from exc

    def list_keys(self, prefix: str) -> list[str]:
        # Walk only the deepest folder the prefix names completely.
        folder = prefix.rpartition("/")[0]
        start = self.root.joinpath(*[p for p in folder.split("/") if p]) if folder else self.root
        keys: list[str] = []
        for dirpath, _dirs, files in os.walk(start):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()

    def open_writer(self, key: str) -> ObjectWriter:
        return _FileWriter(self._path(key))


class _FileWriter:
    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=path.parent)
        except OSError as exc:
            raise TransientError(f"cannot create {path}: {exc}") from exc
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes, /) -> int:
        try:
            return self._file.write(data)
        except OSError as exc:
            raise TransientError(f"cannot write {self._path}: {exc}") from exc

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._file.closed:
            return
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self._path)
            # The rename itself must survive a power cut: sync the folder entry too.
            dir_fd = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self.abort()
            raise TransientError(f"cannot publish {self._path}: {exc}") from exc

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._tmp.unlink()


# -- construction ----------------------------------------------------------------------------


def open_target(url: str, s3: S3Settings, archive: ArchiveSettings | None = None) -> ArchiveTarget:
    """The target a URL names: ``file:///path`` or ``s3://bucket[/prefix]``."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in {"", "localhost"}:
            raise ConfigError(f"AGENTWATCH_ARCHIVE__TARGET: file URL with a host: {url!r}")
        return FileTarget(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        from consumers.archive.s3_target import S3Target, s3_client

        if not parsed.netloc:
            raise ConfigError(f"AGENTWATCH_ARCHIVE__TARGET: no bucket in {url!r}")
        kwargs: dict[str, Any] = {}
        if archive is not None:
            kwargs = {
                "sse": archive.sse,
                "sse_kms_key_id": archive.sse_kms_key_id,
                "multipart_threshold": archive.multipart_threshold_bytes,
                "part_size": archive.multipart_part_bytes,
            }
        target = S3Target(s3_client(s3), parsed.netloc, parsed.path, **kwargs)
        if archive is not None and archive.create_bucket:
            target.ensure_bucket()
        return target
    raise ConfigError(f"AGENTWATCH_ARCHIVE__TARGET: expected file:// or s3:// URL, got {url!r}")
