"""Which names hold secrets, and which values next to them are code rather than secrets.

Shared by the text rules (``password=...``, ``"token": "..."``, ``--api-key ...``) and by the
map-key rule (``{"DB_PASSWORD": "..."}``), so both agree on what a sensitive name is. The word
lists follow detect-secrets' keyword.py DENYLIST/FALSE_POSITIVES and gitleaks' generic-api-key
allowlist (``key_id``, ``secret_name``, ``token_url``... are names *about* a secret, not it).
"""

from __future__ import annotations

import re
from enum import Flag, auto


class KeyKind(Flag):
    NONE = 0
    PASSWORD = auto()
    SECRET = auto()
    ENV = auto()
    AUTHORIZATION = auto()
    AWS_SECRET = auto()
    """aws_secret_access_key, AWS_SECRET_ACCESS_KEY, SecretAccessKey, aws_secret_key."""


_COMPONENTS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_ENV_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[A-Z]{3,}")

_PASSWORD_WORDS = frozenset({"password", "passwd", "passphrase", "pass", "pwd", "pw"})
_PASSWORD_SUFFIXES = ("password", "passwd", "passphrase")
_SECRET_WORDS = frozenset({"secret", "token", "credential", "credentials", "auth"})
_SECRET_SUFFIXES = ("secret", "token")
# detect-secrets DENYLIST compounds (api_key, app_key, auth_key, ...) plus common key names.
_KEY_COMPOUNDS = frozenset({
    "apikey", "appkey", "authkey", "servicekey", "applicationkey", "accountkey", "dbkey",
    "databasekey", "clientkey", "privatekey", "secretkey", "accesskey", "signingkey",
    "encryptionkey", "masterkey", "licensekey", "sessionkey", "webhookkey",
})
# The last word says the value is *about* the secret (gitleaks' generic allowlist and ours).
_META_SUFFIXES = frozenset({
    "name", "names", "id", "ids", "url", "urls", "uri", "endpoint", "file", "files", "path",
    "paths", "dir", "length", "len", "size", "type", "types", "field", "fields", "env", "var",
    "variable", "prompt", "policy", "min", "max", "regex", "pattern", "label", "placeholder",
    "hint", "count", "counts", "ttl", "timeout", "expiry", "expires", "expiration", "format",
    "manager", "header", "param", "method", "mode", "provider", "required", "enabled",
    "disabled", "reset", "strength", "version", "store", "stdin", "cmd", "command", "helper",
    "limit", "budget", "usage", "used", "remaining", "index", "idx", "kind", "class", "ref",
    "template", "config", "location", "source", "prefix", "suffix", "scope", "scopes",
    "rotation", "created", "updated", "changed", "at", "by", "set", "exists", "valid", "input",
    "sock", "socket", "server", "host", "domain", "realm", "service", "backend", "plugin",
    "strategy", "flow", "level", "status", "state", "error", "errors", "message", "msg", "user",
    "username", "email", "description", "doc", "docs", "help", "text",
})
# First words that make the name a flag or a counter about a secret.
_META_PREFIXES = frozenset({
    "is", "has", "use", "uses", "enable", "enabled", "require", "requires", "allow", "needs",
    "show", "hide", "skip", "no", "with", "without", "num", "n", "max", "min", "public", "pub",
    "csrf", "input", "output", "next", "prev", "previous", "page", "continuation", "start",
})
# "pass" alone is a pass number or pass/fail far more often than a password; it counts only in
# an environment-style name (DB_PASS) or after one of these words (db_pass, smtp_pass...).
_PASS_OWNERS = frozenset({
    "db", "database", "user", "admin", "root", "mysql", "smtp", "redis", "ldap", "ftp", "proxy",
    "mail", "pg", "sql", "postgres", "key", "keystore", "store", "truststore", "basic", "ssh",
    "login", "account", "my", "app", "api", "vault", "rabbitmq", "amqp", "mongo", "imap",
})
_NOT_SECRET_NAMES = frozenset({"pwd", "oldpwd", "pass"})
"""Whole names that are sensitive only inside a longer name (PWD is the working directory)."""


def key_components(key: str) -> list[str]:
    return [c.lower() for c in _COMPONENTS.findall(key)]


def classify_key(key: str) -> KeyKind:
    """What a key/variable/flag name says about its value. Pure; the engine caches it."""
    bare = key.strip("-_.").rsplit(".", 1)[-1] if "." in key else key.strip("-_")
    parts = key_components(bare)
    if not parts:
        return KeyKind.NONE
    joined = "".join(parts)
    if joined in ("authorization", "proxyauthorization"):
        return KeyKind.AUTHORIZATION
    if len(parts) == 1 and parts[0] in _NOT_SECRET_NAMES:
        return KeyKind.NONE
    if len(parts) > 1 and (parts[-1] in _META_SUFFIXES or parts[0] in _META_PREFIXES):
        return KeyKind.NONE
    kind = KeyKind.NONE
    env_style = _ENV_NAME.fullmatch(bare) is not None
    for i, part in enumerate(parts):
        nxt = parts[i + 1] if i + 1 < len(parts) else ""
        if part == "pass" and not env_style and (i == 0 or parts[i - 1] not in _PASS_OWNERS):
            continue
        if part in _PASSWORD_WORDS or part.endswith(_PASSWORD_SUFFIXES):
            found, after = KeyKind.PASSWORD, nxt
        elif part in _SECRET_WORDS or part.endswith(_SECRET_SUFFIXES) or part in _KEY_COMPOUNDS:
            found, after = KeyKind.SECRET, nxt
        elif nxt == "key" and part + nxt in _KEY_COMPOUNDS:
            found, after = KeyKind.SECRET, parts[i + 2] if i + 2 < len(parts) else ""
        else:
            continue
        if after not in _META_SUFFIXES:  # token_count_total: a count, not a token
            kind |= found
    if kind and env_style and _env_suffix(parts):
        kind |= KeyKind.ENV
    if kind & KeyKind.SECRET and parts[-1] == "key" and (
        parts[-3:] == ["secret", "access", "key"] or parts[-3:] == ["aws", "secret", "key"]
    ):
        kind |= KeyKind.AWS_SECRET
    return kind


_KEYWORD_HEADS = (_PASSWORD_WORDS | _SECRET_WORDS | _KEY_COMPOUNDS) | {"key", "authorization"}


def tail_may_be_secret(tail: str) -> bool:
    """Cheap necessary condition for classify_key: ``tail`` is a key from one of its secret
    keywords to its end ("token_count", "keyboard", "Password"). False means no key ending
    in ``tail`` classifies as a secret, whatever precedes it; True decides nothing."""
    parts = key_components(tail)
    if not parts:
        return False
    head = parts[0]
    if head not in _KEYWORD_HEADS and not head.endswith(_PASSWORD_SUFFIXES + _SECRET_SUFFIXES):
        return False
    return len(parts) == 1 or parts[-1] not in _META_SUFFIXES


def _env_suffix(parts: list[str]) -> bool:
    """The issue's *_API_KEY / *_TOKEN / *_SECRET family (and password variants)."""
    last = parts[-1]
    if last in ("token", "secret", "password", "passwd", "pwd", "pass", "credentials",
                "credential", "apikey", "passphrase"):
        return True
    return len(parts) >= 2 and last == "key" and parts[-2] + "key" in _KEY_COMPOUNDS


# --- values ---------------------------------------------------------------------------------

# detect-secrets keyword.py FALSE_POSITIVES, reduced to the words (quotes/brackets are handled
# by the value grammar), plus type names seen in annotations and common code words.
_PLACEHOLDERS = frozenset({
    "none", "null", "nil", "true", "false", "undefined", "undef", "str", "string", "bytes",
    "int", "bool", "any", "optional", "secretstr", "secretbytes", "redacted", "<redacted>",
    "dummy", "dummy_value", "dummy_secret", "not_real_key", "some_key", "todo", "prompt",
    "required", "disable", "disabled", "nopasswd", "await", "new", "function", "this", "self",
    "cls", "async", "yield", "lambda", "return", "os", "process", "env", "getenv", "input",
    "getpass", "os.environ", "process.env", "...", "xxx", "*", "-", "?", "_", "object", "dict",
    "list", "char", "text", "varchar", "empty",
})
_TEMPLATE = re.compile(
    r"\$[A-Za-z_][A-Za-z0-9_]*|\$\{[^}\x00]*\}|\$\{\{.*\}\}|\{\{.*\}\}|%\([A-Za-z_]+\)s|%s"
    r"|%[A-Za-z_]+%|<[^<>\x00]*>|\{[A-Za-z_][A-Za-z0-9_.]*\}|\[[A-Za-z_ -]*\]|x{3,}|X{3,}"
    r"|\*+|\.{3}|#+"
)
_CALL_OR_SUBSCRIPT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*[(\[]")
_DOTTED_NAME = re.compile(r"[A-Za-z_]+(?:\.[A-Za-z_]+)+")
_LETTERS_NAME = re.compile(r"[A-Za-z_]+")
_WORDS_NAME = re.compile(r"[A-Za-z_][A-Za-z_. -]*")
_KEYWORDISH = re.compile(r"(?i)pass|pwd|secret|token|key|cred|auth")


def is_placeholder(value: str) -> bool:
    """Values that are obviously not a secret in any syntax (empty, masks, templates)."""
    if not value or value.startswith(("***", "${", "{{", "$(", "%(")):
        return True
    return value.lower() in _PLACEHOLDERS or _TEMPLATE.fullmatch(value) is not None


def is_code_reference(
    value: str,
    *,
    spaced_assignment: bool,
    quoted_key: bool = False,
    prose_follows: bool = False,
) -> bool:
    """An unquoted value that reads as a variable, call, attribute or constant, not a literal.

    ``password = hashed`` (spaces around ``=``: code style) keeps letter-only names and small
    integer constants (``API_KEY = 0``); a ``password=hunter2`` shell/env/URL assignment is
    redacted. Letter-only names that contain a secret word (``newPassword``, ``args.token``)
    are kept in every form, and so are letter-only names after a quoted key
    (``{'token': token_value}`` is Python or JS: JSON would quote the value, YAML rarely quotes
    the key) or followed by more words (``:param password: the user's password``).
    """
    if _CALL_OR_SUBSCRIPT.match(value) or _DOTTED_NAME.fullmatch(value):
        return True
    if spaced_assignment and value.isdigit() and len(value) <= 5:
        return True
    if _LETTERS_NAME.fullmatch(value):
        if _KEYWORDISH.search(value) is not None:
            return True
        # Names are short or have underscores; 25+ letters in one run is a generated secret.
        return (spaced_assignment or quoted_key or prose_follows) and (
            len(value) <= 24 or "_" in value
        )
    return False


def is_named_reference(value: str) -> bool:
    """A quoted letter-only word containing a secret word ("nextToken", "api_key_name"): a
    name, which no generated token or key looks like (passwords excepted by the caller)."""
    return _WORDS_NAME.fullmatch(value) is not None and _KEYWORDISH.search(value) is not None
