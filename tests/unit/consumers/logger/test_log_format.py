from __future__ import annotations

from consumers.logger.format import MAX_MESSAGE, format_event
from pipeline.model import new_event

T0 = 1_700_000_000_123_000


def line(event_type: str, payload: dict, **kw: object) -> str:  # type: ignore[type-arg]
    return format_event(new_event(event_type, "s", payload, timestamp_us=T0, agent="main", **kw))  # type: ignore[arg-type]


def test_lines_name_time_level_agent_and_what_happened() -> None:
    assert line("file.write", {"path": "src/a.py", "lines_added": 3, "lines_removed": 1}) == \
        "[2023-11-14 22:13:20.123] INFO     [main] file.write src/a.py (+3/-1)"
    assert line("command.executed", {"binary": "cargo", "args": ["build"], "exit_code": 101,
                                     "duration_ms": 900}).endswith(
        "WARNING  [main] $ cargo build -> exit 101 in 900 ms")
    assert line("test.executed", {"suite": "t.py", "test_name": "x", "outcome": "failed"}).endswith(
        "[main] test t.py::x failed")
    assert line("llm.request", {"model": "claude", "input_tokens": 10, "output_tokens": 2,
                                "cost_usd": 0.0125}).endswith("llm claude in=10 out=2 $0.0125")
    assert line("agent.task.failed", {"task_type": "fix", "error_message": "boom"}).endswith(
        "ERROR    [main] agent.task.failed fix: boom")
    assert line("deploy.finished", {}).endswith("[main] deploy.finished")


def test_messages_are_one_line_and_bounded() -> None:
    text = line("agent.task.failed", {"error_message": "a\nb " + "x" * 1000})
    assert "\n" not in text and text.endswith("…")
    assert len(text.split("] ", 3)[-1]) <= MAX_MESSAGE
