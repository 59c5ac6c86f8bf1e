"""The acks are committed before Faust's consumer drops them on a revocation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from processors.revoke_commit import commit_before_revocation


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
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def suspend(self) -> None:
        self.calls.append("suspend")

    def clear(self) -> None:
        self.calls.append("clear")


class FakeConsumer:
    """Faust's consumer as far as the revocation goes: it forgets acks, then calls the app."""

    def __init__(self, app: FakeApp, assigned: set[str], fail: bool = False) -> None:
        self.app = app
        self.assigned = assigned
        self.acked = {tp: [1, 2, 3] for tp in assigned}
        self.committed: dict[str, int] = {}
        self.fail = fail

    def assignment(self) -> set[str]:
        return set(self.assigned)

    def stop_flow(self) -> None:
        self.app.calls.append("stop_flow")

    def pause_partitions(self, tps: set[str]) -> None:
        self.app.calls.append("pause")

    async def wait_empty(self) -> None:
        self.app.calls.append("wait_empty")
        if self.fail:
            raise RuntimeError("coordinator gone")
        for tp, offsets in self.acked.items():
            self.committed[tp] = max(offsets) + 1

    async def on_partitions_revoked(self, revoked: set[str]) -> None:
        self.app.calls.append("faust_revoked")
        for tp in revoked:
            self.acked.pop(tp, None)
        await self.app.on_partitions_revoked.send(revoked)
        self.assigned -= revoked


class FakeApp:
    def __init__(self, assigned: set[str], fail: bool = False) -> None:
        self.calls: list[str] = []
        self.should_stop = False
        self.on_partitions_revoked = FakeSignal()
        self.flow_control = FakeFlowControl(self.calls)
        self.consumer = FakeConsumer(self, assigned, fail)


def revoke(app: FakeApp, tps: set[str]) -> None:
    asyncio.run(app.consumer.on_partitions_revoked(tps))


def test_acked_offsets_are_committed_before_faust_drops_them() -> None:
    app = FakeApp(set())
    commit_before_revocation(app)
    revoke(app, set())  # aiokafka's empty revocation before the first join installs the patch
    app.consumer.assigned = {"in-0", "in-1"}
    app.consumer.acked = {"in-0": [4, 5], "in-1": [9]}
    app.calls.clear()
    revoke(app, {"in-0", "in-1"})
    assert app.consumer.committed == {"in-0": 6, "in-1": 10}
    assert app.calls == ["stop_flow", "suspend", "pause", "clear", "wait_empty", "faust_revoked"]


def test_nothing_assigned_goes_straight_to_faust() -> None:
    app = FakeApp(set())
    commit_before_revocation(app)
    revoke(app, set())
    app.calls.clear()
    revoke(app, set())
    assert app.calls == ["faust_revoked"]


def test_a_failed_commit_still_lets_faust_revoke() -> None:
    app = FakeApp(set(), fail=True)
    commit_before_revocation(app)
    revoke(app, set())
    app.consumer.assigned = {"in-0"}
    app.calls.clear()
    revoke(app, {"in-0"})
    assert app.calls[-2:] == ["wait_empty", "faust_revoked"]
    assert app.consumer.committed == {}


@pytest.mark.parametrize("revocations", [1, 3])
def test_the_consumer_is_wrapped_once(revocations: int) -> None:
    app = FakeApp(set())
    commit_before_revocation(app)
    for _ in range(revocations):
        revoke(app, set())
    app.consumer.assigned = {"in-0"}
    app.calls.clear()
    revoke(app, {"in-0"})
    assert app.calls.count("wait_empty") == 1
