"""FileTarget on a temp folder, S3Target on moto's in-process S3: the same contract."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from consumers.archive.s3_target import S3Target, s3_client
from consumers.archive.targets import (
    ArchiveTarget,
    ArchiveTargetError,
    FileTarget,
    open_target,
    writing,
)
from pipeline.errors import ConfigError, TransientError
from pipeline.settings import ArchiveSettings, S3Settings

MiB = 1024 * 1024


@pytest.fixture
def mocked_s3() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


def _s3_target(bucket: str = "rec", prefix: str = "pre/fix", **kwargs: object) -> S3Target:
    client = s3_client(S3Settings(endpoint_url=None))
    client.create_bucket(Bucket=bucket)
    return S3Target(client, bucket, prefix, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(params=["file", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArchiveTarget]:
    if request.param == "file":
        yield FileTarget(tmp_path / "archive")
        return
    from moto import mock_aws

    with mock_aws():
        yield _s3_target()


def test_put_get_list_delete(target: ArchiveTarget) -> None:
    target.put("a/b/one.bin", b"1")
    target.put("a/b/two.bin", b"22")
    target.put("a/c.bin", b"333")
    target.put("ab.bin", b"4")
    assert target.get("a/b/two.bin") == b"22"
    assert target.get("a/missing") is None
    assert target.list_keys("a/") == ["a/b/one.bin", "a/b/two.bin", "a/c.bin"]
    assert target.list_keys("a/b/o") == ["a/b/one.bin"]
    assert target.list_keys("a") == ["a/b/one.bin", "a/b/two.bin", "a/c.bin", "ab.bin"]
    assert target.list_keys("zzz/") == []
    target.put("a/b/one.bin", b"replaced")
    assert target.get("a/b/one.bin") == b"replaced"
    target.delete(["a/b/one.bin", "a/never-existed"])
    assert target.list_keys("a/b/") == ["a/b/two.bin"]


def test_streaming_writer_publishes_only_on_close(target: ArchiveTarget) -> None:
    writer = target.open_writer("w/obj")
    writer.write(b"part1-")
    assert target.get("w/obj") is None
    assert target.list_keys("w/") == []
    writer.write(b"part2")
    writer.close()
    assert target.get("w/obj") == b"part1-part2"


def test_aborted_writer_leaves_nothing(target: ArchiveTarget) -> None:
    target.put("w/obj", b"old")
    with pytest.raises(RuntimeError), writing(target, "w/obj") as writer:
        writer.write(b"new half")
        raise RuntimeError("crash mid-write")
    assert target.get("w/obj") == b"old"
    assert target.list_keys("w/") == ["w/obj"]


def test_file_target_refuses_escaping_keys(tmp_path: Path) -> None:
    target = FileTarget(tmp_path)
    for key in ("../x", "a/../../x", "", ".tmp-x"):
        with pytest.raises(ArchiveTargetError):
            target.put(key, b"x")


def test_file_target_hides_temp_files(tmp_path: Path) -> None:
    target = FileTarget(tmp_path)
    writer = target.open_writer("d/obj")
    writer.write(b"x")
    assert any(name.startswith(".tmp-") for name in os.listdir(tmp_path / "d"))
    assert target.list_keys("") == []
    writer.abort()
    assert os.listdir(tmp_path / "d") == []


def test_s3_large_object_goes_up_in_parts_with_sse(mocked_s3: None) -> None:
    target = _s3_target(multipart_threshold=5 * MiB, part_size=5 * MiB, sse="AES256")
    data = os.urandom(12 * MiB + 123)
    target.put("big.bin", data)
    assert target.get("big.bin") == data
    head = target.client.head_object(Bucket="rec", Key="pre/fix/big.bin")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 2 MiB
    assert head["ServerSideEncryption"] == "AES256"
    target.put("small.bin", b"tiny")
    small = target.client.head_object(Bucket="rec", Key="pre/fix/small.bin")
    assert "-" not in small["ETag"].strip('"')
    assert small["ServerSideEncryption"] == "AES256"


def test_s3_streaming_writer_switches_to_multipart(mocked_s3: None) -> None:
    target = _s3_target(multipart_threshold=5 * MiB, part_size=5 * MiB,
                        sse="aws:kms", sse_kms_key_id="alias/archive")
    chunk = os.urandom(MiB)
    with writing(target, "stream.bin") as writer:
        for _ in range(11):
            writer.write(chunk)
    assert target.get("stream.bin") == chunk * 11
    head = target.client.head_object(Bucket="rec", Key="pre/fix/stream.bin")
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ServerSideEncryption"] == "aws:kms"


def test_s3_aborted_multipart_leaves_no_object_and_no_upload(mocked_s3: None) -> None:
    target = _s3_target(multipart_threshold=5 * MiB, part_size=5 * MiB)
    with pytest.raises(RuntimeError), writing(target, "half.bin") as writer:
        writer.write(os.urandom(6 * MiB))
        raise RuntimeError("crash")
    assert target.get("half.bin") is None
    uploads = target.client.list_multipart_uploads(Bucket="rec")
    assert uploads.get("Uploads", []) == []


def test_s3_missing_bucket_is_not_retriable(mocked_s3: None) -> None:
    target = S3Target(s3_client(S3Settings(endpoint_url=None)), "no-such-bucket")
    with pytest.raises(ArchiveTargetError) as info:
        target.put("k", b"x")
    assert not info.value.retriable
    target.ensure_bucket()
    target.put("k", b"x")
    assert target.get("k") == b"x"


def test_s3_unreachable_endpoint_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now: connection refused, quickly.
    client = s3_client(S3Settings(endpoint_url=f"http://127.0.0.1:{port}"),
                       connect_timeout=1, read_timeout=1, max_attempts=1)
    target = S3Target(client, "b")
    with pytest.raises(TransientError) as info:
        target.put("k", b"x")
    assert info.value.retriable
    with pytest.raises(TransientError):
        target.list_keys("")


def test_open_target_by_url(tmp_path: Path, mocked_s3: None) -> None:
    file_target = open_target((tmp_path / "x").as_uri(), S3Settings())
    assert isinstance(file_target, FileTarget) and file_target.root == tmp_path / "x"
    archive = ArchiveSettings(create_bucket=True, sse="AES256")
    s3 = open_target("s3://made-here/some/prefix/", S3Settings(endpoint_url=None), archive)
    assert isinstance(s3, S3Target)
    assert (s3.bucket, s3.prefix, s3.describe()) == ("made-here", "some/prefix",
                                                     "s3://made-here/some/prefix")
    s3.put("k", b"v")
    for bad in ("http://x/y", "s3:///nobucket", "file://host/path"):
        with pytest.raises(ConfigError):
            open_target(bad, S3Settings())


def test_part_size_below_s3_minimum_is_a_config_error(mocked_s3: None) -> None:
    with pytest.raises(ConfigError):
        _s3_target(part_size=MiB)
