from __future__ import annotations

from pipeline.config_doc import DOC_PATH, iter_variables, render_markdown


def test_docs_configuration_md_is_current() -> None:
    # Regenerate with: agentwatch config --doc > docs/configuration.md
    assert DOC_PATH.read_text() == render_markdown()


def test_every_variable_is_listed_with_prefix_and_nested_delimiter() -> None:
    names = [v for v, *_ in iter_variables()]
    assert "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS" in names
    assert "AGENTWATCH_STACK__DIR" in names
    assert len(names) == len(set(names))
