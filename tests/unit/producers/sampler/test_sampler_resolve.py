"""Which session an agent process belongs to, from the evidence the sampler gathers."""

from __future__ import annotations

from producers.sampler.resolve import Evidence, resolve
from producers.sampler.view import ActiveView, SessionInfo

T = 1_700_000_000.0
A, B = (100, T), (200, T)


def s(sid: str, cwd: str | None, started: float, seen: float | None = None) -> SessionInfo:
    return SessionInfo(sid, cwd, int(started * 1e6), int((seen or started) * 1e6))


def view(*sessions: SessionInfo) -> ActiveView:
    return ActiveView(int(T * 1e6), sessions)


def test_the_environment_of_a_child_names_the_session_exactly() -> None:
    got = resolve({A: Evidence(cwd="/repo", env_session=("s1", T + 5))},
                  view(s("s1", "/other", T), s("s2", "/repo", T + 1, T + 9)))
    assert got == {A: "s1"}


def test_the_newest_strong_evidence_wins() -> None:
    ev = Evidence(cwd="/repo", env_session=("s1", T + 5), call_session=("s2", T + 6))
    assert resolve({A: ev}, view(s("s1", "/repo", T), s("s2", "/repo", T + 4))) == {A: "s2"}


def test_after_clear_the_successor_in_the_same_directory_takes_over() -> None:
    ev = Evidence(cwd="/repo", env_session=("s1", T + 5))
    # s1 ended (the collector no longer lists it); s2 started after the evidence, same cwd.
    assert resolve({A: ev}, view(s("s2", "/repo", T + 10), s("s3", "/x", T + 11))) == {A: "s2"}
    # Nothing newer: keep what is known.
    assert resolve({A: ev}, view(s("s3", "/x", T + 11))) == {A: "s1"}


def test_two_processes_in_one_directory_keep_their_own_sessions() -> None:
    agents = {A: Evidence(cwd="/repo", env_session=("s1", T + 5)), B: Evidence(cwd="/repo")}
    got = resolve(agents, view(s("s1", "/repo", T, T + 8), s("s2", "/repo", T + 1, T + 9)))
    assert got == {A: "s1", B: "s2"}


def test_the_pid_file_names_the_session_when_nothing_stronger_does() -> None:
    ev = Evidence(cwd="/repo", pidfile_session="s1")
    assert resolve({A: ev}, view(s("s1", "/repo", T), s("s2", "/repo", T + 1, T + 9))) == {A: "s1"}
    assert resolve({A: ev}, None) == {A: "s1"}  # collector away: still usable


def test_cwd_matching_takes_the_most_recently_active_session_and_subdirectories() -> None:
    got = resolve({A: Evidence(cwd="/repo")},
                  view(s("old", "/repo", T, T + 1), s("new", "/repo/sub", T, T + 5),
                       s("else", "/elsewhere", T, T + 9)))
    assert got == {A: "new"}


def test_no_match_means_no_session() -> None:
    assert resolve({A: Evidence(cwd="/repo")}, view(s("x", "/elsewhere", T))) == {}
    assert resolve({A: Evidence(cwd=None)}, view(s("x", None, T))) == {}
    assert resolve({A: Evidence(cwd="/repo")}, None) == {}
