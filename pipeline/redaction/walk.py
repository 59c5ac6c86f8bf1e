"""Walk an event's strings in one fixed order, then rebuild it with some of them replaced.

Both passes visit a map key before its value, list and tuple items in order, and the record of
a ``(name, record)`` union pair but not its name; string number *i* of the collect pass is
string number *i* of the rebuild pass. Paths are JSON pointers (RFC 6901 escaping); a union
pair adds no segment, so a command's third argument is ``/payload/args/2``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_MISS: Any = object()


class Collector:
    """Gathers every string of an event (root keys in ``skip`` excluded).

    Hot path: one call per event, so the walk is a closure over local names and a string value
    under a string key is appended without another call.
    """

    def __init__(
        self,
        skip: frozenset[str],
        max_len: int,
        keep: int,
        key_rule: Callable[[str], int | None],
        *,
        with_paths: bool,
        key_cache: dict[str, int | None] | None = None,
    ) -> None:
        self.strings: list[str] = []
        self.forced: dict[int, int] = {}
        """String index -> rule priority, for values whose map key names a secret."""
        self.cuts: dict[int, int] = {}
        """String index -> original length, for strings longer than ``max_len``."""
        self.paths: list[str] | None = [] if with_paths else None
        self.total = 0
        """Characters collected (before cuts); cheap to check against ``max_len``."""
        self._skip = skip
        self._max = max_len
        self._keep = keep
        self._key_rule = key_rule
        self._key_cache = key_cache if key_cache is not None else {}

    def collect(self, event: dict[str, Any]) -> None:
        if self.paths is not None:
            self._collect_with_paths(event)
        else:
            self._collect_fast(event)
        if self.total > self._max:
            for i, s in enumerate(self.strings):
                if len(s) > self._max:
                    self.cuts[i] = len(s)
                    self.strings[i] = s[: self._keep]

    def _collect_fast(self, event: dict[str, Any]) -> None:
        strings = self.strings
        append = strings.append
        forced = self.forced
        key_rule = self._key_rule
        cached = self._key_cache.get
        miss = _MISS
        total = 0

        def node(n: Any) -> None:
            nonlocal total
            kind = type(n)
            if kind is str:
                append(n)
                total += len(n)
            elif kind is dict:
                for k, v in n.items():
                    if type(k) is str:
                        append(k)
                        total += len(k)
                        if type(v) is str:
                            pri = cached(k, miss)
                            if pri is miss:
                                pri = key_rule(k)
                            if pri is not None:
                                forced[len(strings)] = pri
                            append(v)
                            total += len(v)
                            continue
                    node(v)
            elif kind is list or kind is tuple:
                if kind is tuple and is_union(n):
                    node(n[1])
                    return
                for item in n:
                    node(item)

        skip = self._skip
        node({k: v for k, v in event.items() if k not in skip})
        self.total = total

    def _collect_with_paths(self, event: dict[str, Any]) -> None:
        for key, value in event.items():
            if key not in self._skip:
                self._item(key, value, "")
        self.total = sum(len(s) for s in self.strings)

    def _item(self, key: Any, value: Any, path: str) -> None:
        paths = self.paths
        assert paths is not None
        child = path + "/" + escape(str(key))
        if type(key) is str:
            paths.append(child)
            self.strings.append(key)
            if type(value) is str:
                pri = self._key_rule(key)
                if pri is not None:
                    self.forced[len(self.strings)] = pri
        self._node(value, child)

    def _node(self, node: Any, path: str) -> None:
        kind = type(node)
        if kind is str:
            assert self.paths is not None
            self.paths.append(path)
            self.strings.append(node)
        elif kind is dict:
            for key, value in node.items():
                self._item(key, value, path)
        elif kind is list or kind is tuple:
            if is_union(node):
                self._node(node[1], path)
                return
            for i, item in enumerate(node):
                self._node(item, f"{path}/{i}")


class Rebuilder:
    """Copies an event, swapping string number *i* for ``replacements[i]``."""

    def __init__(self, skip: frozenset[str], replacements: dict[int, str]) -> None:
        self.changed: list[str] = []
        """Paths of replaced strings, in visiting order (a renamed key's path once)."""
        self._skip = skip
        self._replacements = replacements
        self._count = 0

    def rebuild(self, event: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in event.items():
            if key in self._skip:
                out[key] = value
            else:
                new_key, new_value = self._item(key, value, "", out)
                out[new_key] = new_value
        return out

    def _item(self, key: Any, value: Any, path: str, taken: dict[Any, Any]) -> tuple[Any, Any]:
        new_key = key
        renamed = False
        if type(key) is str:
            idx = self._count
            self._count += 1
            if idx in self._replacements:
                new_key = self._replacements[idx]
                renamed = True
                while new_key in taken:  # two secrets redacted to the same token
                    new_key += "#"
        child = path + "/" + escape(str(new_key))
        before = len(self.changed)
        new_value = self._node(value, child)
        if renamed and self.changed[before : before + 1] != [child]:
            self.changed.insert(before, child)
        return new_key, new_value

    def _node(self, node: Any, path: str) -> Any:
        kind = type(node)
        if kind is str:
            idx = self._count
            self._count += 1
            if idx in self._replacements:
                self.changed.append(path)
                return self._replacements[idx]
            return node
        if kind is dict:
            out: dict[Any, Any] = {}
            for key, value in node.items():
                new_key, new_value = self._item(key, value, path, out)
                out[new_key] = new_value
            return out
        if kind is list or kind is tuple:
            if is_union(node):
                return (node[0], self._node(node[1], path))
            items = [self._node(item, f"{path}/{i}") for i, item in enumerate(node)]
            return items if kind is list else tuple(items)
        return node


def is_union(node: Any) -> bool:
    """fastavro's (record name, record) pair for a union branch (pipeline.serde)."""
    return (
        type(node) is tuple and len(node) == 2 and type(node[0]) is str and type(node[1]) is dict
    )


def escape(segment: str) -> str:
    """RFC 6901 escaping of one JSON-pointer segment."""
    if "~" in segment or "/" in segment:
        return segment.replace("~", "~0").replace("/", "~1")
    return segment
