"""Erasure and export pieces that need no server: tombstone keys, archive keys, rendering."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest

from consumers.archive.layout import manifest_key, recording_key, segment_key
from consumers.archive.manifest import Manifest, write_manifest
from consumers.archive.targets import FileTarget
from consumers.privacy.erase import (
    WIDGET_NAMES,
    Subject,
    archive_keys,
    changelog_topics,
    erase_archive,
    tombstones,
)
from consumers.privacy.export import ExportManifest, ExportWriter
from pipeline.errors import QueryError


def test_subject_is_a_user_or_a_session() -> None:
    with pytest.raises(QueryError):
        Subject()
    with pytest.raises(QueryError):
        Subject(user="a", session="s")
    assert Subject(user="a").describe() == "user:a"


def test_tombstones_cover_every_widget_and_changelog_key_on_every_partition() -> None:
    parts = {"w": 3, "app-widget-state-changelog": 2, "app-pattern-state-changelog": 2}
    out = tombstones(["s/1"], "w", changelog_topics("app"), parts.__getitem__)
    widget = {(t.partition, t.key) for t in out if t.topic == "w"}
    assert widget == {(p, f"s/1/{w}".encode()) for p in range(3) for w in WIDGET_NAMES}
    state = [t for t in out if t.topic != "w"]
    assert len(state) == 4 and {t.key for t in state} == {b'"s/1"'}


def test_archive_erasure_removes_recording_manifest_and_segments_only(tmp_path: Path) -> None:
    target = FileTarget(tmp_path)
    for sid in ("a1", "b1"):
        rec = recording_key(sid, 1_767_225_600_000_000)
        target.put(rec, b"x")
        target.put(segment_key(sid, 0, 7), b"y")
        write_manifest(target, Manifest(sid, rec, 1, 1, 1, True, 1, 1))
    target.put(recording_key("c1", 1_767_225_600_000_000), b"no manifest")
    assert len(archive_keys(target, "a1")) == 3
    deleted, remaining = erase_archive(target, ["a1", "c1"])
    assert deleted == 4 and remaining == {"archive.objects": 0}
    assert target.list_keys("") == sorted([manifest_key("b1"), segment_key("b1", 0, 7),
                                           recording_key("b1", 1_767_225_600_000_000)])
    assert erase_archive(target, ["a1"]) == (0, {"archive.objects": 0})


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_rendering_counts_hashes_and_trails_the_manifest(fmt: str) -> None:
    writer = ExportWriter(fmt, ExportManifest("user:a", fmt, ["s1"]))  # type: ignore[arg-type]
    body = writer.header() + writer.record("event", {"session_id": "s1", "ts_us": 5, "x": "a,b"})
    body += writer.record("audit", {"session_id": "", "at_us": 6})
    trailer = writer.trailer()
    manifest = writer.manifest.as_dict()
    assert manifest["counts"] == {"event": 1, "audit": 1} and manifest["records"] == 2
    assert manifest["sha256"] == hashlib.sha256(body).hexdigest()
    if fmt == "json":
        lines = [json.loads(x) for x in (body + trailer).decode().splitlines()]
        assert lines[0] == {"record_type": "event", "data": {"session_id": "s1", "ts_us": 5, "x": "a,b"}}
        assert lines[-1]["record_type"] == "manifest"
    else:
        rows = list(csv.reader(io.StringIO((body + trailer).decode())))
        assert rows[0] == ["record_type", "session_id", "timestamp_us", "data"]
        assert rows[1][:3] == ["event", "s1", "5"] and json.loads(rows[1][3])["x"] == "a,b"
        assert rows[-1][0] == "manifest"
