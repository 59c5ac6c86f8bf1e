"""The shape of a named query (its parameters, its SQL) and the window every events query shares.

Kept apart from the registry (queries.py) so the modules that define queries (sql_*.py) and the
registry that collects them do not import each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pipeline.errors import QueryError


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    """ClickHouse type for the docs' ``{name:Type}`` form: Int64, UInt32, Float64, String."""
    default: str
    help: str

    def convert(self, raw: str) -> Any:
        if self.type == "String":
            return raw
        try:
            value: Any = float(raw) if self.type == "Float64" else int(raw)
        except ValueError:
            raise QueryError(f"parameter {self.name} takes a {self.type}; got {raw!r}") from None
        if self.type.startswith("UInt") and value < 0:
            raise QueryError(f"parameter {self.name} must not be negative; got {raw!r}")
        return value


@dataclass(frozen=True)
class NamedQuery:
    name: str
    title: str
    description: str
    sql: str
    params: tuple[Param, ...] = ()

    def param_names(self) -> set[str]:
        return set(re.findall(r"%\((\w+)\)s", self.sql))


# The window and session filter every events query shares. `since`/`until` are Unix seconds
# compared on the DateTime column, so ClickHouse prunes day partitions; microseconds stay in ts_us.
WINDOW_PARAMS: tuple[Param, ...] = (
    Param("since", "UInt32", "24h", "start of the window: a duration ago (24h, 7d) or an ISO "
          "date/datetime (UTC); the CLI's --since"),
    Param("until", "UInt32", "now", "end of the window (exclusive), same forms; the CLI's --until"),
    Param("session", "String", "", "one session id, or empty for all sessions; the CLI's --session"),
)
WINDOW = (
    "timestamp >= toDateTime(%(since)s) AND timestamp < toDateTime(%(until)s)\n"
    "      AND (%(session)s = '' OR session_id = %(session)s)"
)
