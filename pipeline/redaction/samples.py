"""Synthetic text for the redaction tests and benchmark; never used on the event path.

``SECRET_MAKERS`` build one secret of each rule's kind in a realistic context and return the
part that must not survive; ``benign_lines`` produce ordinary coding-session text (commit hashes,
UUIDs, base64 test data, paths, code, URLs without credentials, versions, public IPs...) that
should come through unchanged. Everything is driven by a ``random.Random`` so a seed, or
hypothesis' ``st.randoms()``, reproduces it.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import string
from collections.abc import Callable
from random import Random

from pipeline.redaction.validators import luhn_ok

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "_-"
# Password alphabet: what people type, minus what ends a bare value in every syntax we parse
# (whitespace, quotes, &) and the characters that never reach a URL's userinfo unescaped.
PASSWORD_CHARS = ALNUM + "!%*_~^.-"

Maker = Callable[[Random], tuple[str, str]]
"""rng -> (text containing the secret, the secret)."""


def _s(rng: Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _password(rng: Random, lo: int = 8, hi: int = 24) -> str:
    """Something a person or a generator would use: letters and digits, maybe symbols."""
    core = _s(rng, PASSWORD_CHARS, rng.randint(lo - 2, hi - 2))
    value = rng.choice(string.ascii_letters) + core + rng.choice(string.digits)
    return value if rng.random() < 0.5 else value[::-1].lstrip(".-") + "7"


def _pick(rng: Random, forms: list[str], secret: str) -> tuple[str, str]:
    return rng.choice(forms).replace("{S}", secret), secret


def _anthropic(rng: Random) -> tuple[str, str]:
    kind = rng.choice(["api03", "admin01", "oat01"])
    key = f"sk-ant-{kind}-{_s(rng, URLSAFE, 93)}AA"
    return _pick(rng, ["{S}", "x-api-key: {S}", 'client = Anthropic(api_key="{S}")'], key)


def _openai(rng: Random) -> tuple[str, str]:
    shape = rng.randrange(3)
    if shape == 0:
        key = f"sk-proj-{_s(rng, URLSAFE, 74)}T3BlbkFJ{_s(rng, URLSAFE, 74)}"
    elif shape == 1:
        key = f"sk-{_s(rng, ALNUM, 20)}T3BlbkFJ{_s(rng, ALNUM, 20)}"
    else:
        key = "sk-" + _s(rng, ALNUM, 48)
    return _pick(rng, ["{S}", "openai.api_key = '{S}'", "key={S}"], key)


def _aws_access(rng: Random) -> tuple[str, str]:
    key = rng.choice(["AKIA", "ASIA", "ABIA", "ACCA"]) + _s(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    return _pick(rng, ["{S}", "aws_access_key_id = {S}", '"AccessKeyId": "{S}"'], key)


def _aws_secret(rng: Random) -> tuple[str, str]:
    key = _s(rng, B64, 40)
    return _pick(rng, ["aws_secret_access_key = {S}", '"SecretAccessKey": "{S}"',
                       "AWS_SECRET_ACCESS_KEY={S}"], key)


def _github(rng: Random) -> tuple[str, str]:
    if rng.random() < 0.2:
        token = "github_pat_" + _s(rng, ALNUM + "_", 82)
    else:
        token = rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + _s(rng, ALNUM, 36)
    return _pick(rng, ["{S}", "https://x-access-token:{S}@github.com/o/r.git",
                       "gh auth login --with-token <<< {S}"], token)


def _gitlab(rng: Random) -> tuple[str, str]:
    prefix = rng.choice(["glpat-", "gldt-", "glrt-", "glptt-", "GR1348941"])
    token = prefix + _s(rng, ALNUM if prefix != "glptt-" else "0123456789abcdef",
                        20 if prefix != "glptt-" else 40)
    return _pick(rng, ["{S}", "PRIVATE-TOKEN: {S}", "token={S}"], token)


def _slack_token(rng: Random) -> tuple[str, str]:
    digits = string.digits
    if rng.random() < 0.3:
        token = (f"xapp-1-A{_s(rng, ALNUM.upper(), 10)}-{_s(rng, digits, 13)}-"
                 f"{_s(rng, 'abcdef0123456789', 64)}")
    else:
        token = (f"xox{rng.choice('bpoas')}-{_s(rng, digits, 12)}-{_s(rng, digits, 13)}-"
                 f"{_s(rng, ALNUM, 24)}")
    return _pick(rng, ["{S}", "SLACK_BOT_TOKEN={S}", "slack token {S} expired"], token)


def _slack_webhook(rng: Random) -> tuple[str, str]:
    path = f"T{_s(rng, ALNUM.upper(), 10)}/B{_s(rng, ALNUM.upper(), 10)}/{_s(rng, ALNUM, 24)}"
    return f"https://hooks.slack.com/services/{path}", path


def _stripe(rng: Random) -> tuple[str, str]:
    if rng.random() < 0.2:
        key = "whsec_" + _s(rng, ALNUM, 32)
    else:
        key = f"{rng.choice('sr')}k_{rng.choice(['live', 'test'])}_{_s(rng, ALNUM, rng.randint(24, 99))}"
    return _pick(rng, ["{S}", "stripe.api_key = {S}", "-u {S}:"], key)


def _google(rng: Random) -> tuple[str, str]:
    key = "AIza" + _s(rng, URLSAFE, 35)
    return _pick(rng, ["{S}", "https://maps.googleapis.com/maps/api/js?key={S}"], key)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jwt(rng: Random) -> tuple[str, str]:
    header = _b64url(json.dumps({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"}).encode())
    claims = {"sub": _s(rng, ALNUM, 12), "iat": rng.randint(1_600_000_000, 1_800_000_000)}
    payload = _b64url(json.dumps(claims).encode())
    token = f"{header}.{payload}.{_b64url(rng.randbytes(32))}"
    return _pick(rng, ["{S}", "id_token={S}", "cookie: session={S}"], token)


def _private_key(rng: Random) -> tuple[str, str]:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    body = "\n".join(_s(rng, B64, 64) for _ in range(rng.randint(2, 8)))
    block = f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"
    if rng.random() < 0.3:
        block = block.replace("\n", "\\n")  # as it appears inside a JSON string
        body = body.replace("\n", "\\n")
    return block, body


def _url_password(rng: Random) -> tuple[str, str]:
    pw = _password(rng)
    scheme = rng.choice(["postgres", "postgresql", "mysql", "redis", "amqp", "https", "mongodb+srv"])
    return f"{scheme}://{_s(rng, string.ascii_lowercase, 6)}:{pw}@db.internal:5432/app", pw


def _authorization(rng: Random) -> tuple[str, str]:
    if rng.random() < 0.3:
        user_pass = f"{_s(rng, string.ascii_lowercase, 5)}:{_password(rng)}"
        cred = base64.b64encode(user_pass.encode()).decode()
        scheme = "Basic"
    else:
        cred = _s(rng, URLSAFE + ".~", rng.randint(20, 60)) + rng.choice(string.digits)
        scheme = rng.choice(["Bearer", "token", "Bearer"])
    forms = ["Authorization: {X} {S}", '-H "Authorization: {X} {S}"',
             '{"Authorization": "{X} {S}"}', "authorization={X} {S}"]
    if scheme != "token":  # a bare "token abc" is prose; bare Bearer/Basic are recognised
        forms.append("{X} {S}")
    form = rng.choice(forms).replace("{X}", scheme)
    return form.replace("{S}", cred), cred


def _env_secret(rng: Random) -> tuple[str, str]:
    name = rng.choice(["OPENROUTER", "MY_SERVICE", "DATADOG", "SENTRY", "X"])
    suffix = rng.choice(["_API_KEY", "_TOKEN", "_SECRET", "_ACCESS_KEY", "_PASSWORD"])
    value = _password(rng, 12, 40)
    form = rng.choice(["export {N}={S}", '{N}="{S}"', "{N}={S} ./run.sh", "  {N}: {S}"])
    return form.replace("{N}", name + suffix).replace("{S}", value), value


def _password_rule(rng: Random) -> tuple[str, str]:
    value = _password(rng)
    forms = ["password={S}", "password: {S}", '"password": "{S}"', "--password {S}",
             "--password={S}", "PGPASSWORD={S} psql", 'db_password = "{S}"', "{'passwd': '{S}'}",
             "curl -u admin:{S} https://api.internal", "spring.datasource.password={S}",
             'db_pwd="{S}"', "mysql_pass: {S}"]
    return _pick(rng, forms, value)


def _secret_rule(rng: Random) -> tuple[str, str]:
    value = _password(rng, 12, 48)
    forms = ["api_key={S}", '"token": "{S}"', "client_secret: {S}", "X-Api-Key: {S}",
             "--api-key {S}", 'accessToken = "{S}"', "secret={S}&state=1", "credentials: '{S}'"]
    return _pick(rng, forms, value)


def _card(rng: Random) -> tuple[str, str]:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15),
                                 ("37", 15), ("6011", 16), ("65", 16), ("3530", 16)])
    body = prefix + _s(rng, string.digits, length - len(prefix) - 1)
    digits = next(body + d for d in string.digits if luhn_ok(body + d))
    sep = rng.choice(["", " ", "-"])
    groups = [digits[:4], digits[4:10], digits[10:]] if length == 15 else [
        digits[i : i + 4] for i in range(0, length, 4)]
    return sep.join(groups), digits if sep == "" else sep.join(groups)


def _email(rng: Random) -> tuple[str, str]:
    local_chars = string.ascii_lowercase + string.digits + "._+-"
    local = rng.choice(string.ascii_lowercase) + _s(rng, local_chars, rng.randint(2, 12))
    local = local.rstrip(".") + rng.choice(string.ascii_lowercase)
    domain = _s(rng, string.ascii_lowercase, rng.randint(3, 10))
    address = f"{local}@{domain}.{rng.choice(['com', 'io', 'dev', 'co.uk', 'de', 'org'])}"
    return _pick(rng, ["{S}", "Author: Jane Doe <{S}>", "mailto:{S}", "contact {S}."], address)


def _ipv4(rng: Random) -> tuple[str, str]:
    net = ipaddress.ip_network(rng.choice(
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]))
    ip = str(net[rng.randrange(net.num_addresses)])
    return _pick(rng, ["{S}", "{S}:8080", "http://{S}/health", "host={S}"], ip)


def _ipv6(rng: Random) -> tuple[str, str]:
    net = ipaddress.ip_network(rng.choice(["fc00::/7", "fe80::/10"]))
    ip = net[rng.randrange(net.num_addresses)]
    text = ip.compressed if rng.random() < 0.7 else ip.exploded
    return _pick(rng, ["{S}", "[{S}]:443", "inet6 {S}/64"], text)


SECRET_MAKERS: dict[str, Maker] = {
    "anthropic_key": _anthropic, "openai_key": _openai, "aws_access_key": _aws_access,
    "aws_secret_key": _aws_secret, "github_token": _github, "gitlab_token": _gitlab,
    "slack_token": _slack_token, "slack_webhook": _slack_webhook, "stripe_key": _stripe,
    "google_api_key": _google, "jwt": _jwt, "private_key": _private_key,
    "url_password": _url_password, "authorization_header": _authorization,
    "env_secret": _env_secret, "password": _password_rule, "secret_assignment": _secret_rule,
    "credit_card": _card, "email": _email, "private_ipv4": _ipv4, "private_ipv6": _ipv6,
}


# --- benign text ----------------------------------------------------------------------------

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
    return _s(rng, "0123456789abcdef", n)


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
