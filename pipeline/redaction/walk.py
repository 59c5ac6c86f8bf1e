"""Walk an event's strings, then rebuild it with some of them replaced.

Replacements are keyed by string *content*, not position: redaction depends only on a string's
text (plus, for a value under a secret-named key, that key's rule), so the rebuild can find what
to swap without replaying the collect pass, and the collect pass may skip strings already known
to be clean. Paths are JSON pointers (RFC 6901 escaping); a ``(name, record)`` union pair adds
no segment, so a command's third argument is ``/payload/args/2``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

_MISS: Any = object()
CLEAN_MAX_LEN = 64
"""Only strings this short are remembered as clean (longer ones rarely repeat)."""


class Collector:
    """Gathers the strings of an event that need scanning (root keys in ``skip`` excluded).

    Hot path, one call per event: the walk is a closure over local names, and a string value
    under a string key is appended without another call. Strings in ``clean`` (short strings
    seen before without a match: field names, cwd, model names...) are left out, except values
    under a secret-named key, which are redacted whatever they say. ``clean`` must hold only
    strings of at most CLEAN_MAX_LEN characters (the engine remembers no longer ones).
    """

    def __init__(
        self,
        skip: frozenset[str],
        key_rule: Callable[[str], int | None],
        key_cache: dict[str, int | None],
        clean: set[str],
    ) -> None:
        self.strings: list[str] = []
        self.forced: dict[int, int] = {}
        """String index -> rule priority, for values under a secret-named map key."""
        self.total = 0
        """Characters collected; a cheap bound for the max_field_length check."""
        self._skip = skip
        self._key_rule = key_rule
        self._key_cache = key_cache
        self._clean = clean

    def collect(self, event: dict[str, Any]) -> None:
        strings = self.strings
        append = strings.append
        forced = self.forced
        key_rule = self._key_rule
        cached = self._key_cache.get
        clean = self._clean
        short = CLEAN_MAX_LEN
        miss = _MISS

        def mapping(d: dict[Any, Any]) -> None:
            for k, v in d.items():
                kind = type(v)
                if type(k) is str:
                    # Only strings up to CLEAN_MAX_LEN are ever remembered clean, and a key's
                    # hash is already computed: no length test needed, unlike for values.
                    if k not in clean:
                        append(k)
                    if kind is str:
                        pri = cached(k, miss)
                        if pri is miss:
                            pri = key_rule(k)
                        if pri is not None:
                            forced[len(strings)] = pri
                            append(v)
                        elif len(v) > short or v not in clean:
                            append(v)
                        continue
                if kind is dict:
                    mapping(v)
                elif kind is list or kind is tuple:
                    sequence(v)
                elif kind is str and (len(v) > short or v not in clean):
                    append(v)

        def sequence(items: list[Any] | tuple[Any, ...]) -> None:
            if type(items) is tuple and is_union(items):
                mapping(items[1])
                return
            for item in items:
                kind = type(item)
                if kind is str:
                    if len(item) > short or item not in clean:
                        append(item)
                elif kind is dict:
                    mapping(item)
                elif kind is list or kind is tuple:
                    sequence(item)

        skip = self._skip
        mapping({k: v for k, v in event.items() if k not in skip} if skip & event.keys() else event)
        self.total = sum(map(len, strings))


class Rebuilder:
    """Copies an event, swapping strings by content and recording the paths it changed."""

    def __init__(
        self,
        skip: frozenset[str],
        replace: dict[str, str],
        forced: dict[tuple[int, str], str],
        key_rule: Callable[[str], int | None],
        allow_paths: tuple[str, ...],
    ) -> None:
        self.changed: list[str] = []
        """Paths of replaced strings, in visiting order (a renamed key's path once)."""
        self._skip = skip
        self._replace = replace
        self._forced = forced
        self._key_rule = key_rule
        self._allow = allow_paths
        self._path: list[str] = []

    def rebuild(self, event: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in event.items():
            if key in self._skip:
                out[key] = value
            else:
                new_key, new_value = self._item(key, value, out)
                out[new_key] = new_value
        return out

    def _allowed(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, pat) for pat in self._allow)

    def _record(self) -> None:
        path = "/" + "/".join(self._path)
        if not self.changed or self.changed[-1] != path:
            self.changed.append(path)

    def _swap(self, original: str, new: str | None) -> str:
        if new is None:
            return original
        if self._allow and self._allowed("/" + "/".join(self._path)):
            return original
        self._record()
        return new

    def _item(self, key: Any, value: Any, taken: dict[Any, Any]) -> tuple[Any, Any]:
        new_key = key
        if type(key) is str:
            new = self._replace.get(key)
            if new is not None and not (
                self._allow and self._allowed("/" + "/".join([*self._path, escape(key)]))
            ):
                new_key = new
                while new_key in taken:
                    new_key += "#"  # two secrets redacted to the same token
        self._path.append(escape(str(new_key)))
        if new_key is not key:
            self._record()
        if type(value) is str and type(key) is str:
            pri = self._key_rule(key)
            new_value = self._forced.get((pri, value)) if pri is not None else None
            new_value = self._swap(value, new_value or self._replace.get(value))
        else:
            new_value = self._node(value)
        self._path.pop()
        return new_key, new_value

    def _node(self, node: Any) -> Any:
        kind = type(node)
        if kind is str:
            return self._swap(node, self._replace.get(node))
        if kind is dict:
            out: dict[Any, Any] = {}
            for key, value in node.items():
                new_key, new_value = self._item(key, value, out)
                out[new_key] = new_value
            return out
        if kind is list or kind is tuple:
            if is_union(node):
                return (node[0], self._node(node[1]))
            items = []
            for i, item in enumerate(node):
                self._path.append(str(i))
                items.append(self._node(item))
                self._path.pop()
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
