"""docs/events.md is what the schemas render to: the catalogue cannot drift from avro/."""

from __future__ import annotations

from pipeline import events_doc, model
from pipeline.schemas import SCHEMA_DIR

DOC = SCHEMA_DIR.parent / "docs" / "events.md"


def test_events_md_is_up_to_date() -> None:
    assert DOC.read_text(encoding="utf-8") == events_doc.render(), (
        "regenerate: .venv/bin/python -m pipeline.events_doc > docs/events.md"
    )


def test_every_family_and_event_type_is_documented() -> None:
    text = events_doc.render()
    for name in model.payload_record_names():
        assert f"### {model.short_name(name)}\n" in text
    for event_type in model.EVENT_TYPES:
        assert f"`{event_type}`" in text
