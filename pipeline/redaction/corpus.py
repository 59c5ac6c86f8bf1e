"""Ordinary coding-session text for the false-positive test and the benchmark.

``BENIGN`` generators produce, by category, text that must come through redaction unchanged:
commit hashes, UUIDs, base64 test data, paths, Python/Go code, code that handles secrets
without containing one, test output, logs, URLs without credentials, versions, public IPs,
timestamps, prose. Driven by a ``random.Random``; never used on the event path.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable
from random import Random

from pipeline.redaction.samples import rand

_WORD_LIST = (
    "user request handler config value result error index count items session event "
    "buffer offset partition topic record schema widget pattern window stream batch "
    "client server status message retry timeout cache token_count build test commit "
    "branch deploy metrics latency parse render update delete create fetch load"
)
_WORDS = _WORD_LIST.split()
_EXT = ("py", "go", "ts", "tsx", "rs", "md", "json", "yaml", "toml", "sql", "sh", "txt")


def _ident(rng: Random) -> str:
    return "_".join(rng.choice(_WORDS) for _ in range(rng.randint(1, 3)))


def _camel(rng: Random) -> str:
    first, *rest = (rng.choice(_WORDS).replace("_", "") for _ in range(rng.randint(1, 3)))
    return first + "".join(w.capitalize() for w in rest)


def _path(rng: Random) -> str:
    parts = [rng.choice(_WORDS).replace("_", "-") for _ in range(rng.randint(1, 5))]
    root = rng.choice(["/home/dev/project", "src", "~/work/agentwatch", "C:\\Users\\dev\\repo", "."])
    sep = "\\" if root.startswith("C:") else "/"
    return root + sep + sep.join(parts) + "." + rng.choice(_EXT)


def _uuid(rng: Random) -> str:
    h = rng.getrandbits(128).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _sha(rng: Random, n: int = 40) -> str:
    return rand(rng, "0123456789abcdef", n)


def _public_ip(rng: Random) -> str:
    while True:
        ip = ipaddress.IPv4Address(rng.getrandbits(32))
        if ip.is_global:
            return str(ip)


def _python(rng: Random) -> str:
    a, b, c = _ident(rng), _ident(rng), _ident(rng)
    return rng.choice([
        f"def {a}({b}: str, {c}: int = 0) -> dict[str, Any]:",
        f"    {a} = self.{b}.get({c!r}, None)",
        f"    return {{'{a}': {b}, 'n': len({c})}}",
        f"    for {a} in sorted({b}, key=lambda x: x.{c}):",
        f"    logger.info(\"{a} took %.2f ms\", elapsed_ms)",
        f"    assert {a} == {b}, f\"unexpected {{{c}}}\"",
        f"from {a}.{b} import {_camel(rng).capitalize()}",
        f"    if not {a}:\n        raise ValueError(\"missing {b}\")",
        f"    {a} = os.environ.get(\"{b.upper()}\", \"{c}\")",
        "    token_count = len(tokens)  # tokens: list[str]",
        "    password_hash = bcrypt.hashpw(password.encode(), bcrypt.gensalt())",
        "    secret_name = f\"prod/{service}/db\"",
        "def check_password(password: str, hashed: bytes) -> bool:",
    ])


def _go(rng: Random) -> str:
    a, b = _camel(rng), _camel(rng)
    return rng.choice([
        f"func ({a[0]} *{a.capitalize()}) {b.capitalize()}(ctx context.Context) error {{",
        f"\tif err := {a}.Close(); err != nil {{\n\t\treturn fmt.Errorf(\"{b}: %w\", err)\n\t}}",
        f"\t{a} := make(map[string]int, len({b}))",
        "\tTokenURL string `json:\"token_url\"`",
        f"\tfor i, {a} := range {b} {{",
    ])


def _test_output(rng: Random) -> str:
    name = _ident(rng)
    return rng.choice([
        f"tests/unit/test_{name}.py::test_{_ident(rng)} PASSED [{rng.randint(1, 99)}%]",
        f"FAILED tests/test_{name}.py::test_it - AssertionError: assert {rng.randint(0, 999)} "
        f"== {rng.randint(0, 999)}",
        f"===== {rng.randint(1, 500)} passed, {rng.randint(0, 5)} skipped in "
        f"{rng.random() * 60:.2f}s =====",
        f"ok  \tgithub.com/acme/{name}\t{rng.random():.3f}s\tcoverage: "
        f"{rng.random() * 100:.1f}% of statements",
    ])


def _url(rng: Random) -> str:
    return rng.choice([
        f"https://github.com/acme/{_ident(rng)}/blob/{_sha(rng)}/{_path(rng).lstrip('./~')}"
        f"#L{rng.randint(1, 900)}",
        f"https://pypi.org/simple/{_ident(rng).replace('_', '-')}/?page={rng.randint(1, 9)}&sort=desc",
        f"http://localhost:{rng.randint(1024, 65535)}/api/v1/{_ident(rng)}?limit=50&offset=100",
        f"git@github.com:acme/{_ident(rng)}.git",
        f"https://docs.python.org/3/library/{_ident(rng)}.html#{_ident(rng)}",
    ])


def _version(rng: Random) -> str:
    v = f"{rng.randint(0, 30)}.{rng.randint(0, 40)}.{rng.randint(0, 200)}"
    return rng.choice([v, f"v{v}", f"{v}-rc.{rng.randint(1, 5)}+build.{rng.randint(1, 999)}",
                       f"{_ident(rng).replace('_', '-')}=={v}", f"{_ident(rng)}@{v}"])


def _secret_handling_code(rng: Random) -> str:
    """Code and config that talk about secrets without containing one."""
    name = _ident(rng).upper()
    return rng.choice([
        "password = getpass.getpass(\"Password: \")",
        "if token is None:\n    token = await refresh_token(client)",
        'headers = {"Authorization": f"Bearer {token}"}',
        f'api_key = os.environ["{name}_API_KEY"]',
        "      GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
        "      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}",
        "    secrets: inherit",
        "def verify(self, password: str) -> bool:\n    return check(self.password_hash, password)",
        "const { token } = await auth.getSession();",
        "token: str | None = Field(default=None, description=\"API token\")",
        "sasl_password: SecretStr | None = None",
        f"export {name}_TOKEN=$(vault read -field=token secret/{_ident(rng)})",
        "user.password = make_password(form.cleaned_data[\"password\"])",
        "if password != confirm_password:",
        "The password must be at least 12 characters long.",
        "Set ANTHROPIC_API_KEY in your environment before running the CLI.",
        f"    max_tokens={rng.randint(100, 8000)},",
        f'"usage": {{"input_tokens": {rng.randint(1, 9999)}, "output_tokens": {rng.randint(1, 999)}}}',
        "auth_type: oauth2",
        "kubectl create secret generic db --from-literal=password=\"$DB_PASSWORD\"",
        "Bearer tokens are sent in the Authorization header.",
        "curl -H \"Authorization: Bearer $TOKEN\" https://api.example.com/v1/me",
        "ssh -i ~/.ssh/id_ed25519 git@github.com",
        "password_reset_url = reverse(\"password_reset\")",
        "token_type: Bearer",
        "secret_key_ref:\n  name: app-secrets\n  key: api-key",
    ])


def _log_line(rng: Random) -> str:
    return rng.choice([
        f"{rng.randint(1, 12):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} INFO "
        f"request_id={_uuid(rng)} status=200 duration_ms={rng.randint(1, 900)}",
        f"Mar  4 10:12:01 host sshd[{rng.randint(100, 99999)}]: Accepted publickey for dev from "
        f"{_public_ip(rng)} port {rng.randint(1024, 65535)}",
        f"  File \"{_path(rng)}\", line {rng.randint(1, 999)}, in {_ident(rng)}",
        f"\tat com.acme.{_camel(rng).capitalize()}.{_camel(rng)}"
        f"({_camel(rng).capitalize()}.java:{rng.randint(1, 900)})",
        f"Listening on http://127.0.0.1:{rng.randint(1024, 65535)} (pid {rng.randint(100, 99999)})",
        f"order {rng.randint(10**11, 10**12)} shipped; invoice INV-{rng.randint(10**6, 10**7)}",
        f"color: #{_sha(rng, 6)}; margin: {rng.randint(0, 40)}px",
        f"image: ghcr.io/acme/{_ident(rng).replace('_', '-')}@sha256:{_sha(rng, 64)}",
        f"Downloaded {rng.randint(1, 900)}.{rng.randint(0, 9)} MB in {rng.randint(1, 60)}s "
        f"({rng.randint(1, 99)} MB/s)",
    ])


BENIGN: dict[str, Callable[[Random], str]] = {
    "secret_handling_code": _secret_handling_code,
    "log": _log_line,
    "git_sha": lambda rng: rng.choice(
        [_sha(rng), f"commit {_sha(rng)}", _sha(rng, 7) + " fix " + _ident(rng)]
    ),
    "uuid": _uuid,
    "base64": lambda rng: base64.b64encode(rng.randbytes(rng.randint(8, 120))).decode(),
    "path": _path,
    "python": _python,
    "go": _go,
    "url": _url,
    "semver": _version,
    "public_ip": lambda rng: rng.choice(["{}", "{}:443", "connect to {} port 22"]).format(
        _public_ip(rng)
    ),
    "test_output": _test_output,
    "sha256": lambda rng: f"sha256:{_sha(rng, 64)}",
    "timestamp": lambda rng: rng.choice([
        str(rng.randint(1_600_000_000_000_000, 1_800_000_000_000_000)),
        f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:{rng.randint(0, 59):02d}:00Z",
    ]),
    "prose": lambda rng: " ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 20))) + ".",
}
"""Ordinary coding-session text by category; nothing here is a secret."""


SESSION_WEIGHTS: dict[str, int] = {
    "python": 25, "go": 8, "test_output": 15, "log": 15, "path": 8, "prose": 8, "url": 5,
    "git_sha": 5, "semver": 3, "uuid": 2, "base64": 2, "timestamp": 2,
    "secret_handling_code": 2, "sha256": 1, "public_ip": 1,
}
"""A coding session's text by share of lines (a judgement, stated so it can be argued with):
mostly code and tool output; code that handles credentials is a small share."""


def benign_line(rng: Random, weights: dict[str, int] | None = None) -> tuple[str, str]:
    if weights is None:
        category = rng.choice(sorted(BENIGN))
    else:
        category = rng.choices(list(weights), weights=list(weights.values()))[0]
    return category, BENIGN[category](rng)


def benign_text(rng: Random, size: int, weights: dict[str, int] | None = None) -> str:
    """About ``size`` characters of benign lines; uniform over categories unless weighted."""
    lines: list[str] = []
    total = 0
    while total < size:
        line = benign_line(rng, weights)[1]
        lines.append(line)
        total += len(line) + 1
    text = "\n".join(lines)
    return text[: text.rfind("\n", 0, size) if text.rfind("\n", 0, size) > size // 2 else size]
