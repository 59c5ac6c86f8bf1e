"""The seek to committed offsets runs with the flow stopped; revocations stop it too."""

from __future__ import annotations

import asyncio
from typing import Any

from processors.startup_flow import hold_flow_around_seeks


class FakeSignal:
    def __init__(self) -> None:
        self.receivers: list[Any] = []

    def connect(self, fun: Any) -> Any:
        self.receivers.append(fun)
        return fun

    async def send(self, *args: Any) -> None:
        for fun in self.receivers:
            await fun(self, *args)


class FakeFlowControl:
    def __init__(self) -> None:
        self.active = True

    def suspend(self) -> None:
        self.active = False

    def resume(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active


class FakeConsumer:
    def __init__(self, app: FakeApp) -> None:
        self.app = app
        self.flow_active = True
        self.seen_during_seek: list[tuple[bool, bool]] = []
        self.assigned: set[Any] = set()
        self._committed_offset: dict[Any, int | None] = {}
        self.earliest: dict[Any, int] = {}
        self.seeks: list[dict[Any, int]] = []

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    async def earliest_offsets(self, *tps: Any) -> dict[Any, int]:
        return {tp: self.earliest.get(tp, 0) for tp in tps}

    async def seek_wait(self, offsets: dict[Any, int]) -> None:
        self.seeks.append(dict(offsets))

    def stop_flow(self) -> None:
        self.flow_active = False

    def resume_flow(self) -> None:
        self.flow_active = True

    async def perform_seek(self) -> None:
        self.seen_during_seek.append((self.flow_active, self.app.flow_control.is_active()))


class FakeTables:
    changelog_topics = frozenset({"app-widget-state-changelog"})


class FakeApp:
    def __init__(self) -> None:
        self.tables = FakeTables()
        self.on_partitions_revoked = FakeSignal()
        self.flow_control = FakeFlowControl()
        self.consumer = FakeConsumer(self)


def test_seek_runs_with_the_flow_stopped_after_the_first_revocation() -> None:
    app = FakeApp()
    hold_flow_around_seeks(app)
    asyncio.run(app.on_partitions_revoked.send(set()))
    assert not app.consumer.flow_active and not app.flow_control.active
    # Recovery resumes the flow to read changelogs, then seeks: the seek must stop it again.
    app.consumer.resume_flow()
    app.flow_control.resume()
    asyncio.run(app.consumer.perform_seek())
    assert app.consumer.seen_during_seek == [(False, False)]


def test_installing_twice_wraps_the_seek_once() -> None:
    app = FakeApp()
    hold_flow_around_seeks(app)
    asyncio.run(app.on_partitions_revoked.send(set()))
    asyncio.run(app.on_partitions_revoked.send({"t"}))
    app.consumer.resume_flow()
    asyncio.run(app.consumer.perform_seek())
    assert len(app.consumer.seen_during_seek) == 1


class RecordingStable:
    """Stands in for StableOffsets: records what it was asked and the flow state then."""

    def __init__(self, app: FakeApp) -> None:
        self.app = app
        self.asked: list[tuple[set[tuple[str, int]], bool]] = []

    async def wait(self, tps: set[tuple[str, int]]) -> bool:
        self.asked.append((tps, self.app.consumer.flow_active))
        return True


def test_the_seek_waits_for_stable_offsets_of_the_assignment_first() -> None:
    from faust.types import TP

    app = FakeApp()
    stable = RecordingStable(app)
    app.consumer.assigned = {TP("in", 2)}
    app.consumer._committed_offset = {TP("in", 2): 7}
    hold_flow_around_seeks(app, stable)  # type: ignore[arg-type]
    asyncio.run(app.on_partitions_revoked.send(set()))
    app.consumer.resume_flow()
    asyncio.run(app.consumer.perform_seek())
    assert stable.asked == [({("in", 2)}, False)]
    assert app.consumer.seen_during_seek == [(False, False)]


def test_partitions_without_a_committed_offset_go_back_to_their_earliest_offset() -> None:
    """aiokafka's seek to committed does nothing for them: what was fetched and cleared would be
    skipped for good."""
    from faust.types import TP

    app = FakeApp()
    never, done, changelog = TP("in", 0), TP("in", 1), TP("app-widget-state-changelog", 0)
    app.consumer.assigned = {never, done, changelog}
    app.consumer._committed_offset = {done: 40}
    app.consumer.earliest = {never: 3}
    hold_flow_around_seeks(app)
    asyncio.run(app.on_partitions_revoked.send(set()))
    asyncio.run(app.consumer.perform_seek())
    assert app.consumer.seeks == [{never: 3}]


def test_no_rewind_when_every_partition_has_a_committed_offset() -> None:
    from faust.types import TP

    app = FakeApp()
    app.consumer.assigned = {TP("in", 0)}
    app.consumer._committed_offset = {TP("in", 0): 5}
    hold_flow_around_seeks(app)
    asyncio.run(app.on_partitions_revoked.send(set()))
    asyncio.run(app.consumer.perform_seek())
    assert app.consumer.seeks == []
