"""The search language's syntax tree and its parser (the compiler is in search.py).

Grammar (NOT binds tighter than AND, AND tighter than OR; juxtaposition means AND)::

    query   := or EOF
    or      := and ("OR" and)*
    and     := not (["AND"] not)*
    not     := ("NOT" | "-") not | "(" or ")" | term
    term    := FIELD ":" value | value                       (a bare value is free text)
    value   := QUOTED | WORD | CMP WORD | "[" WORD "TO" WORD "]" | WORD ".." WORD
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.errors import QueryError

# --------------------------------------------------------------------------------------------
# Syntax tree


@dataclass(frozen=True)
class Range:
    """Inclusive bounds; ``None`` is open."""

    low: str | None
    high: str | None


@dataclass(frozen=True)
class Term:
    field: str | None
    """None for free text."""
    op: str
    """One of ``=``, ``>``, ``>=``, ``<``, ``<=``, ``range``, ``exists``."""
    value: str | Range | None
    quoted: bool = False


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node = Term | Not | And | Or

_KEYWORDS = frozenset({"AND", "OR", "NOT", "TO"})
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*(?=:)")
_WORD_END = frozenset(' \t\r\n()"')
_MAX_QUERY_CHARS = 4000
_MAX_TERMS = 100


class _Parser:
    """Scannerless recursive descent: the lexical rules differ after ``field:``, so no token list."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.terms = 0

    # -- helpers
    def _error(self, message: str) -> QueryError:
        return QueryError(f"search syntax error at column {self.pos + 1}: {message}")

    def _skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _at_end(self) -> bool:
        self._skip_ws()
        return self.pos >= len(self.text)

    def _peek_keyword(self) -> str | None:
        self._skip_ws()
        for kw in ("AND", "OR", "NOT"):
            end = self.pos + len(kw)
            if self.text.startswith(kw, self.pos) and (
                end >= len(self.text) or self.text[end] in _WORD_END
            ):
                return kw
        return None

    def _take_keyword(self, kw: str) -> None:
        self._skip_ws()
        self.pos += len(kw)

    def _word(self, stop: str = "") -> str:
        start = self.pos
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch in _WORD_END or ch in stop:
                break
            if ch == "\\" and self.pos + 1 < len(self.text):
                self.pos += 2
                continue
            self.pos += 1
        return self.text[start:self.pos]

    def _quoted(self) -> str:
        assert self.text[self.pos] == '"'
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if ch == '"':
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        raise self._error("unterminated quoted value")

    # -- grammar
    def parse(self) -> Node:
        if self._at_end():
            raise self._error("empty search")
        node = self._or()
        if not self._at_end():
            raise self._error(f"unexpected {self.text[self.pos]!r}")
        return node

    def _or(self) -> Node:
        items = [self._and()]
        while self._peek_keyword() == "OR":
            self._take_keyword("OR")
            items.append(self._and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def _and(self) -> Node:
        items = [self._not()]
        while True:
            kw = self._peek_keyword()
            if kw == "AND":
                self._take_keyword("AND")
                items.append(self._not())
            elif kw == "OR" or self._at_end() or self.text[self.pos] == ")":
                break
            else:
                items.append(self._not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def _not(self) -> Node:
        if self._peek_keyword() == "NOT":
            self._take_keyword("NOT")
            return Not(self._not())
        self._skip_ws()
        if self.pos >= len(self.text):
            raise self._error("expected a term")
        ch = self.text[self.pos]
        if ch == "-" and self.pos + 1 < len(self.text) and not self.text[self.pos + 1].isspace():
            self.pos += 1
            return Not(self._not())
        if ch == "(":
            self.pos += 1
            node = self._or()
            self._skip_ws()
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                raise self._error("missing ')'")
            self.pos += 1
            return node
        if ch == ")":
            raise self._error("unexpected ')'")
        return self._term()

    def _term(self) -> Term:
        self.terms += 1
        if self.terms > _MAX_TERMS:
            raise self._error(f"more than {_MAX_TERMS} terms")
        match = _FIELD.match(self.text, self.pos)
        if match is None:
            value, quoted = self._plain_value()
            return Term(None, "=", value, quoted)
        name = match.group(0)
        self.pos = match.end() + 1
        if self.pos >= len(self.text) or self.text[self.pos] in " \t\r\n)":
            raise self._error(f"field {name!r} has no value")
        return self._field_value(name)

    def _plain_value(self) -> tuple[str, bool]:
        if self.text[self.pos] == '"':
            return self._quoted(), True
        word = self._word()
        if not word:
            raise self._error("expected a value")
        if word in _KEYWORDS:
            raise self._error(f"{word} needs a term on each side (quote it to search for the word)")
        return word, False

    def _field_value(self, name: str) -> Term:
        text = self.text
        if text[self.pos] == '"':
            return Term(name, "=", self._quoted(), True)
        if text[self.pos] == "[":
            return Term(name, "range", self._bracket_range())
        for op in (">=", "<=", ">", "<"):
            if text.startswith(op, self.pos):
                self.pos += len(op)
                if self.pos < len(text) and text[self.pos] == '"':
                    return Term(name, op, self._quoted(), True)
                bound = self._word()
                if not bound:
                    raise self._error(f"{name}:{op} needs a value")
                return Term(name, op, bound)
        word = self._word()
        if not word:
            raise self._error(f"field {name!r} needs a value (grouping after a field is not supported)")
        if word == "*":
            return Term(name, "exists", None)
        low, sep, high = word.partition("..")
        if sep and (low or high):
            return Term(name, "range", Range(low or None, high or None))
        return Term(name, "=", word)

    def _bracket_range(self) -> Range:
        self.pos += 1
        self._skip_ws()
        low = self._word(stop="]")
        self._skip_ws()
        if not self.text.startswith("TO", self.pos):
            raise self._error("a range looks like [low TO high]")
        self.pos += 2
        self._skip_ws()
        high = self._word(stop="]")
        self._skip_ws()
        if self.pos >= len(self.text) or self.text[self.pos] != "]":
            raise self._error("missing ']' after range")
        self.pos += 1
        if not low or not high:
            raise self._error("a range needs two bounds (use * for an open end)")
        return Range(None if low == "*" else low, None if high == "*" else high)


def parse(text: str) -> Node:
    """The syntax tree of a search; raises ``QueryError`` naming the column of the problem."""
    if len(text) > _MAX_QUERY_CHARS:
        raise QueryError(f"search longer than {_MAX_QUERY_CHARS} characters")
    return _Parser(text).parse()


def render_tree(node: Node) -> str:
    """A canonical, fully parenthesised rendering of a tree (for error messages and tests)."""
    if isinstance(node, And):
        return "(" + " AND ".join(render_tree(n) for n in node.items) + ")"
    if isinstance(node, Or):
        return "(" + " OR ".join(render_tree(n) for n in node.items) + ")"
    if isinstance(node, Not):
        return f"NOT {render_tree(node.item)}"
    if isinstance(node.value, Range):
        value = f"[{node.value.low or '*'} TO {node.value.high or '*'}]"
    elif node.op == "exists":
        value = "*"
    else:
        assert node.value is not None
        shown = f'"{node.value}"' if node.quoted else node.value
        value = shown if node.op == "=" else f"{node.op}{shown}"
    return value if node.field is None else f"{node.field}:{value}"
