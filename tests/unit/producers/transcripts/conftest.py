"""Fixtures of the transcript importer's unit tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from transcript_lines import SID, session_lines, write_jsonl


@pytest.fixture
def write_transcript(tmp_path: Path) -> Callable[..., Path]:
    def write(rows: list[Any] | None = None, name: str = f"{SID}.jsonl") -> Path:
        return write_jsonl(tmp_path / "projects" / "-home-me-app" / name,
                           session_lines() if rows is None else rows)
    return write
