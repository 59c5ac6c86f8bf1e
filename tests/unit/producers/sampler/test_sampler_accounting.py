"""Process table and ledgers: CPU of exited processes from their parents' counters, no double count."""

from __future__ import annotations

import pytest
from fake_host import MIB, FakeHost

from producers.sampler.ledger import Ledger
from producers.sampler.table import ProcessTable


def look(table: ProcessTable, host: FakeHost, ledger: Ledger, root: int = 100) -> None:
    """One tick as the core runs it: list, join, sample, sample the exits' parents, settle."""
    _new, gone = table.refresh(host.now)
    if root in table.procs:
        for proc in [table.procs[root], *table.descendants(root)]:
            ledger.add(proc)
    vanished = table.sample([p for p in ledger.members.values() if p.alive], host.now)
    exited = gone + vanished
    table.sample([p for pid in {p.ppid for p in exited} if (p := table.procs.get(pid))], host.now)
    table.settle(exited, host.now)


def tree(host: FakeHost) -> tuple[int, int, int]:
    agent = host.spawn(1, "claude")
    host.now += 1
    shell = host.spawn(agent, "bash", ("bash", "-c", "make"))
    work = host.spawn(shell, "cc")
    return agent, shell, work


def test_a_child_that_exits_between_samples_is_counted_in_full_through_its_parent() -> None:
    host = FakeHost()
    agent, shell, work = tree(host)
    table = ProcessTable(host.source())
    ledger = Ledger(host.now - 5)
    look(table, host, ledger)
    host.burn(work, 0.4, 0.1)
    host.now += 0.1
    look(table, host, ledger)
    assert ledger.cpu() == pytest.approx((0.4, 0.1))
    host.burn(work, 0.6, 0.2)  # unseen: it exits before the next look
    host.exit(work)
    host.burn(shell, 0.05)
    host.now += 0.1
    look(table, host, ledger)
    assert ledger.cpu() == pytest.approx((1.05, 0.3))
    host.exit(shell)
    host.now += 0.1
    look(table, host, ledger)
    # The shell and its child are reaped by the agent, which is in the ledger: counted once.
    assert ledger.cpu() == pytest.approx((1.05, 0.3))
    assert not ledger.members.keys() - {table.procs[agent].key}  # dead members are folded in


def test_the_top_of_a_group_gets_its_last_slice_from_a_parent_outside_the_group() -> None:
    host = FakeHost()
    agent, shell, work = tree(host)
    table = ProcessTable(host.source())
    everything = Ledger(host.now - 5)
    look(table, host, everything)
    command = Ledger(host.now - 1)
    for pid in (shell, work):
        command.add(table.procs[pid])
    host.burn(work, 0.5)
    host.now += 0.1
    look(table, host, everything)
    host.burn(work, 0.5, 0.25)  # the last slice, never sampled
    host.exit(work)
    host.exit(shell)
    host.now += 1.0
    look(table, host, everything)
    assert command.cpu() == pytest.approx((1.0, 0.25))
    assert table.procs[agent].last is not None


def test_without_children_counters_the_last_seen_values_are_kept() -> None:
    host = FakeHost(counts_children=False)  # macOS: no children_* times
    _agent, shell, work = tree(host)
    table = ProcessTable(host.source())
    ledger = Ledger(host.now - 5)
    look(table, host, ledger)
    host.burn(work, 0.5)
    host.now += 0.1
    look(table, host, ledger)
    host.burn(work, 0.5)
    host.exit(work)
    host.exit(shell)
    host.now += 0.1
    look(table, host, ledger)
    assert ledger.cpu() == pytest.approx((0.5, 0.0))


def test_a_slice_bigger_than_the_wall_time_allows_is_capped() -> None:
    host = FakeHost(cpus=1)
    agent, shell, work = tree(host)
    table = ProcessTable(host.source())
    ledger = Ledger(host.now - 5)
    command = Ledger(host.now - 1)
    look(table, host, ledger)
    command.add(table.procs[shell])
    command.add(table.procs[work])
    host.exit(work)
    host.now += 0.1
    look(table, host, ledger)
    host.exit(shell)
    host.burn(agent, 0.0)
    host.procs[agent].children_user += 5.0  # an unwatched sibling reaped in the same interval
    host.now += 0.1
    look(table, host, ledger)
    assert command.cpu()[0] <= 0.1 + 1e-9


def test_peak_memory_is_the_larger_of_the_lifetime_peak_and_the_sampled_sum() -> None:
    host = FakeHost()
    agent, _shell, work = tree(host)
    table = ProcessTable(host.source())
    ledger = Ledger(host.now - 5, peaks=True)
    look(table, host, ledger)
    host.grow(work, 300 * MIB)
    host.grow(work, 50 * MIB)  # the spike happened between two looks
    host.now += 1
    look(table, host, ledger)
    ledger.observe_memory(host.now)
    assert ledger.peak_rss == 300 * MIB
    assert ledger.rss_bytes == 4 * MIB * 2 + 50 * MIB
    assert ledger.exact_peak
    assert table.procs[work].want_peak and table.procs[agent].want_peak


def test_without_lifetime_peaks_the_peak_is_the_highest_sampled_sum() -> None:
    host = FakeHost()
    _agent, _shell, work = tree(host)
    table = ProcessTable(host.source())
    ledger = Ledger(host.now - 5)  # an agent's ledger: peaks are not read (one file less)
    look(table, host, ledger)
    host.grow(work, 300 * MIB)
    host.grow(work, 50 * MIB)
    host.now += 1
    look(table, host, ledger)
    ledger.observe_memory(host.now)
    assert ledger.peak_rss == 58 * MIB and not ledger.exact_peak
    assert not table.procs[work].want_peak


def test_pid_table_follows_reparenting_and_reuse_of_the_table() -> None:
    host = FakeHost()
    _agent, shell, work = tree(host)
    table = ProcessTable(host.source())
    table.refresh(host.now)
    assert [p.pid for p in table.descendants(shell)] == [work]
    host.exit(shell)
    _new, gone = table.refresh(host.now)
    assert [p.pid for p in gone] == [shell]
    assert table.procs[work].ppid == 1 and work in table.procs[1].children


def test_a_sibling_sampled_less_often_is_not_charged_with_a_call_reaped_meanwhile() -> None:
    """The agent is sampled often (it is a call's parent), its other child only at full looks:
    when both children exit, each gets its own share of the agent's gain, never the other's."""
    host = FakeHost()
    agent, shell, work = tree(host)
    server = host.spawn(agent, "node", ("node", "mcp.js"))
    table = ProcessTable(host.source())
    everything = Ledger(host.now - 5)
    look(table, host, everything)  # a full look: everything sampled
    host.burn(server, 0.2)
    host.burn(work, 0.5)
    host.exit(work)
    host.exit(shell)  # the call ends, reaped by the agent
    host.now += 0.5
    # A fast look: only the call's processes and their parent are sampled.
    _new, gone = table.refresh(host.now)
    table.sample([table.procs[agent]], host.now)
    table.settle(gone, host.now)
    host.burn(server, 0.1)
    host.exit(server)  # the server ends before the next full look
    host.now += 0.5
    _new, gone = table.refresh(host.now)
    table.sample([table.procs[agent]], host.now)
    table.settle(gone, host.now)
    [shell_proc] = [p for p in everything.members.values() if p.pid == shell]
    [server_proc] = [p for p in everything.members.values() if p.pid == server]
    assert shell_proc.final_user == pytest.approx(0.5)
    assert server_proc.final_user == pytest.approx(0.3)
    assert everything.cpu()[0] == pytest.approx(0.8)
