from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import BackpressureError, ConfigError
from producers.spool import Spool, SpoolFullError, encode_record


def recs(n: int, start: int = 0, size: int = 10) -> list[tuple[bytes, bytes, bytes]]:
    return [(f"s{i % 3}".encode(), b"tag", f"{i:06d}".encode().ljust(size, b".")) for i in
            range(start, start + n)]


def drain(spool: Spool, batch: int = 7) -> list[bytes]:
    """Read everything from the cursor on, committing as a forwarder would."""
    out = []
    pos = spool.cursor
    while True:
        got = spool.read(pos, batch)
        if not got:
            return out
        out += [r.value for r in got]
        pos = got[-1].next_position
        spool.commit(pos, len(got))


def test_append_read_commit_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000)
    spool.append(recs(50))
    assert spool.backlog() == 50
    values = drain(spool)
    assert [v[:6] for v in values] == [f"{i:06d}".encode() for i in range(50)]
    assert spool.backlog() == 0
    assert spool.backlog_bytes() == 0
    spool.close()


def test_records_keep_key_tag_and_value(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000)
    spool.append([(b"session-1", b"hook\x1ffile.write", b"\xc3\x01avro bytes")])
    [record] = spool.read(spool.cursor, 10)
    assert (record.key, record.tag, record.value) == (b"session-1", b"hook\x1ffile.write",
                                                       b"\xc3\x01avro bytes")
    spool.close()


def test_segments_roll_and_delivered_ones_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=64 * 1024)
    for i in range(40):
        spool.append(recs(10, i * 10, size=500))
    assert len(list(tmp_path.glob("*.seg"))) > 1
    values = drain(spool, batch=33)
    assert [v[:6] for v in values] == [f"{i:06d}".encode() for i in range(400)]
    # Only the active file is left once everything is delivered.
    assert len(list(tmp_path.glob("*.seg"))) == 1
    spool.close()


def test_reopen_resends_only_what_was_not_committed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=64 * 1024)
    spool.append(recs(100, size=1000))
    got = spool.read(spool.cursor, 40)
    spool.commit(got[-1].next_position, len(got))
    spool.close()

    again = Spool(tmp_path, max_bytes=10_000_000, segment_bytes=64 * 1024)
    assert again.backlog() == 60
    values = drain(again)
    assert [v[:6] for v in values] == [f"{i:06d}".encode() for i in range(40, 100)]
    again.close()


def test_torn_tail_is_cut_and_appends_continue(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000)
    spool.append(recs(5))
    spool.close()
    [segment] = tmp_path.glob("*.seg")
    whole = encode_record(b"k", b"t", b"half written")
    with open(segment, "ab") as fh:
        fh.write(whole[: len(whole) // 2])

    again = Spool(tmp_path, max_bytes=10_000_000)
    assert again.backlog() == 5
    again.append(recs(2, start=5))
    values = drain(again)
    assert [v[:6] for v in values] == [f"{i:06d}".encode() for i in range(7)]
    again.close()


def test_corrupt_record_in_the_middle_is_not_delivered_as_garbage(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000)
    spool.append(recs(3))
    spool.close()
    [segment] = tmp_path.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))

    again = Spool(tmp_path, max_bytes=10_000_000)
    values = drain(again)
    assert all(v.endswith(b"....") and v[:6].isdigit() for v in values)
    assert len(values) < 3
    again.close()


def test_full_spool_refuses_whole_batches(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1024 * 1024)
    spool.append(recs(1, size=1000 * 1000))
    with pytest.raises(SpoolFullError) as info:
        spool.append(recs(10, size=10_000))
    assert isinstance(info.value, BackpressureError) and info.value.retry_after > 0
    assert spool.backlog() == 1
    drain(spool)
    spool.append(recs(10, size=10_000))  # room again once delivered
    assert spool.backlog() == 10
    spool.close()


def test_record_larger_than_a_read_chunk(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64 * 1024 * 1024)
    big = b"x" * (5 * 1024 * 1024)
    spool.append([(b"k", b"t", big), (b"k", b"t", b"small")])
    values = drain(spool)
    assert values == [big, b"small"]
    spool.close()


def test_one_process_per_spool(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000)
    with pytest.raises(ConfigError):
        Spool(tmp_path, max_bytes=10_000_000)
    spool.close()
    Spool(tmp_path, max_bytes=10_000_000).close()


def test_sync_is_safe_to_call_repeatedly(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10_000_000, fsync=True)
    spool.append(recs(3))
    spool.sync()
    spool.sync()
    spool.append(recs(3, start=3))
    spool.sync()
    assert len(drain(spool)) == 6
    spool.close()
