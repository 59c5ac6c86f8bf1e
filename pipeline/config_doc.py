"""`agentwatch config`: the effective settings, and the one documented list of every variable.

docs/configuration.md is generated from the Settings model by ``render_markdown`` (a unit test
keeps the two identical), so the list cannot drift from the code.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from pipeline.settings import REPO_ROOT, Settings, load_settings

DOC_PATH = REPO_ROOT / "docs" / "configuration.md"

_HEADER = """# Configuration

Every component reads one settings object (`pipeline/settings.py`). Sources, highest priority
first: environment variables, the TOML file named by `AGENTWATCH_CONFIG` (or `./agentwatch.toml`),
then the embedded defaults below, which are the local stack's. Nested sections are joined by `__`
in variable names; in TOML they are tables (`[kafka]`, `[topics]`, ...). Booleans accept
`true/false/1/0` only. `agentwatch config` prints the effective values with secrets masked.

This file is generated: `agentwatch config --doc > docs/configuration.md`.

| variable | type | default | description |
|---|---|---|---|
"""


def _type_name(info: FieldInfo) -> str:
    ann = info.annotation
    text = getattr(ann, "__name__", None) or str(ann)
    text = text.replace("typing.", "").replace("pathlib.", "").replace("pydantic.types.", "")
    return text.replace("|", "or")


def _default_text(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "(secret)" if value.get_secret_value() else '""'
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, tuple | list):
        return json.dumps(list(value))
    text = str(value)
    return text.replace(str(REPO_ROOT), "<checkout>")


def iter_variables(
    model: type[BaseModel] = Settings, prefix: str = "AGENTWATCH_", instance: BaseModel | None = None
) -> Iterator[tuple[str, str, str, str]]:
    for name, info in model.model_fields.items():
        default = getattr(instance, name) if instance is not None else info.get_default(
            call_default_factory=True)
        var = f"{prefix}{name.upper()}"
        if isinstance(default, BaseModel):
            yield from iter_variables(type(default), var + "__", default)
            continue
        desc = " ".join((info.description or "").split()).replace("|", "\\|")
        yield var, _type_name(info), _default_text(default), desc


def render_markdown() -> str:
    rows = [f"| `{v}` | {t} | `{d}` | {desc} |" for v, t, d, desc in iter_variables()]
    return _HEADER + "\n".join(rows) + "\n"


def configure(parser: argparse.ArgumentParser, _name: str) -> None:
    parser.add_argument("--doc", action="store_true", help="print docs/configuration.md")


def run(args: argparse.Namespace) -> int:
    if args.doc:
        print(render_markdown(), end="")
        return 0
    settings = load_settings()
    print(settings.model_dump_json(indent=2))
    return 0
