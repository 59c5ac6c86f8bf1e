"""Synthetic secrets for the redaction tests and benchmark; never used on the event path.

``SECRET_MAKERS`` build one secret of each rule's kind in a realistic context and return the
part that must not survive. Driven by a ``random.Random`` so a seed, or hypothesis'
``st.randoms()``, reproduces it. Benign text lives in corpus.py.
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


def rand(rng: Random, alphabet: str, n: int) -> str:
    """``n`` characters drawn from ``alphabet``."""
    return "".join(rng.choice(alphabet) for _ in range(n))


def _password(rng: Random, lo: int = 8, hi: int = 24) -> str:
    """Something a person or a generator would use: letters and digits, maybe symbols."""
    core = rand(rng, PASSWORD_CHARS, rng.randint(lo - 2, hi - 2))
    value = rng.choice(string.ascii_letters) + core + rng.choice(string.digits)
    return value if rng.random() < 0.5 else value[::-1].lstrip(".-") + "7"


def _pick(rng: Random, forms: list[str], secret: str) -> tuple[str, str]:
    return rng.choice(forms).replace("{S}", secret), secret


def _anthropic(rng: Random) -> tuple[str, str]:
    kind = rng.choice(["api03", "admin01", "oat01"])
    key = f"sk-ant-{kind}-{rand(rng, URLSAFE, 93)}AA"
    return _pick(rng, ["{S}", "x-api-key: {S}", 'client = Anthropic(api_key="{S}")'], key)


def _openai(rng: Random) -> tuple[str, str]:
    shape = rng.randrange(3)
    if shape == 0:
        key = f"sk-proj-{rand(rng, URLSAFE, 74)}T3BlbkFJ{rand(rng, URLSAFE, 74)}"
    elif shape == 1:
        key = f"sk-{rand(rng, ALNUM, 20)}T3BlbkFJ{rand(rng, ALNUM, 20)}"
    else:
        key = "sk-" + rand(rng, ALNUM, 48)
    return _pick(rng, ["{S}", "openai.api_key = '{S}'", "key={S}"], key)


def _aws_access(rng: Random) -> tuple[str, str]:
    key = rng.choice(["AKIA", "ASIA", "ABIA", "ACCA"]) + rand(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
    return _pick(rng, ["{S}", "aws_access_key_id = {S}", '"AccessKeyId": "{S}"'], key)


def _aws_secret(rng: Random) -> tuple[str, str]:
    key = rand(rng, B64, 40)
    return _pick(rng, ["aws_secret_access_key = {S}", '"SecretAccessKey": "{S}"',
                       "AWS_SECRET_ACCESS_KEY={S}"], key)


def _github(rng: Random) -> tuple[str, str]:
    if rng.random() < 0.2:
        token = "github_pat_" + rand(rng, ALNUM + "_", 82)
    else:
        token = rng.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + rand(rng, ALNUM, 36)
    return _pick(rng, ["{S}", "https://x-access-token:{S}@github.com/o/r.git",
                       "gh auth login --with-token <<< {S}"], token)


def _gitlab(rng: Random) -> tuple[str, str]:
    prefix = rng.choice(["glpat-", "gldt-", "glrt-", "glptt-", "GR1348941"])
    token = prefix + rand(rng, ALNUM if prefix != "glptt-" else "0123456789abcdef",
                        20 if prefix != "glptt-" else 40)
    return _pick(rng, ["{S}", "PRIVATE-TOKEN: {S}", "token={S}"], token)


def _slack_token(rng: Random) -> tuple[str, str]:
    digits = string.digits
    if rng.random() < 0.3:
        token = (f"xapp-1-A{rand(rng, ALNUM.upper(), 10)}-{rand(rng, digits, 13)}-"
                 f"{rand(rng, 'abcdef0123456789', 64)}")
    else:
        token = (f"xox{rng.choice('bpoas')}-{rand(rng, digits, 12)}-{rand(rng, digits, 13)}-"
                 f"{rand(rng, ALNUM, 24)}")
    return _pick(rng, ["{S}", "SLACK_BOT_TOKEN={S}", "slack token {S} expired"], token)


def _slack_webhook(rng: Random) -> tuple[str, str]:
    path = f"T{rand(rng, ALNUM.upper(), 10)}/B{rand(rng, ALNUM.upper(), 10)}/{rand(rng, ALNUM, 24)}"
    return f"https://hooks.slack.com/services/{path}", path


def _stripe(rng: Random) -> tuple[str, str]:
    if rng.random() < 0.2:
        key = "whsec_" + rand(rng, ALNUM, 32)
    else:
        key = f"{rng.choice('sr')}k_{rng.choice(['live', 'test'])}_{rand(rng, ALNUM, rng.randint(24, 99))}"
    return _pick(rng, ["{S}", "stripe.api_key = {S}", "-u {S}:"], key)


def _google(rng: Random) -> tuple[str, str]:
    key = "AIza" + rand(rng, URLSAFE, 35)
    return _pick(rng, ["{S}", "https://maps.googleapis.com/maps/api/js?key={S}"], key)


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _jwt(rng: Random) -> tuple[str, str]:
    header = _b64url(json.dumps({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"}).encode())
    claims = {"sub": rand(rng, ALNUM, 12), "iat": rng.randint(1_600_000_000, 1_800_000_000)}
    payload = _b64url(json.dumps(claims).encode())
    token = f"{header}.{payload}.{_b64url(rng.randbytes(32))}"
    return _pick(rng, ["{S}", "id_token={S}", "cookie: session={S}"], token)


def _private_key(rng: Random) -> tuple[str, str]:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    body = "\n".join(rand(rng, B64, 64) for _ in range(rng.randint(2, 8)))
    block = f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"
    if rng.random() < 0.3:
        block = block.replace("\n", "\\n")  # as it appears inside a JSON string
        body = body.replace("\n", "\\n")
    return block, body


def _url_password(rng: Random) -> tuple[str, str]:
    pw = _password(rng)
    scheme = rng.choice(["postgres", "postgresql", "mysql", "redis", "amqp", "https", "mongodb+srv"])
    return f"{scheme}://{rand(rng, string.ascii_lowercase, 6)}:{pw}@db.internal:5432/app", pw


def _authorization(rng: Random) -> tuple[str, str]:
    if rng.random() < 0.3:
        user_pass = f"{rand(rng, string.ascii_lowercase, 5)}:{_password(rng)}"
        cred = base64.b64encode(user_pass.encode()).decode()
        scheme = "Basic"
    else:
        cred = rand(rng, URLSAFE + ".~", rng.randint(20, 60)) + rng.choice(string.digits)
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
    body = prefix + rand(rng, string.digits, length - len(prefix) - 1)
    digits = next(body + d for d in string.digits if luhn_ok(body + d))
    sep = rng.choice(["", " ", "-"])
    groups = [digits[:4], digits[4:10], digits[10:]] if length == 15 else [
        digits[i : i + 4] for i in range(0, length, 4)]
    return sep.join(groups), digits if sep == "" else sep.join(groups)


def _email(rng: Random) -> tuple[str, str]:
    local_chars = string.ascii_lowercase + string.digits + "._+-"
    local = rng.choice(string.ascii_lowercase) + rand(rng, local_chars, rng.randint(2, 12))
    local = local.rstrip(".") + rng.choice(string.ascii_lowercase)
    domain = rand(rng, string.ascii_lowercase, rng.randint(3, 10))
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
