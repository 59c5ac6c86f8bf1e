"""Each built-in rule: what it redacts (exactly), and near-misses it must leave alone."""

from __future__ import annotations

import base64

import pytest

from pipeline.redaction import RULE_NAMES, RedactionSettings, Redactor

R = Redactor()
ANTHROPIC = "sk-ant-api03-" + "Ab3_-" * 18 + "xyzAA"
GHP = "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM_BODY = "MIIEowIBAAKCAQEA" + "q7Zx" * 20
PEM = f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----"


def tok(rule: str) -> str:
    return f"***REDACTED:{rule}***"


# (rule, input, exact expected output)
POSITIVE: list[tuple[str, str, str]] = [
    ("anthropic_key", f"key {ANTHROPIC} end", f"key {tok('anthropic_key')} end"),
    ("anthropic_key", "ANTHROPIC_KEY='sk-ant-oat01-" + "x1" * 30 + "'",
     f"ANTHROPIC_KEY='{tok('anthropic_key')}'"),
    ("openai_key", "sk-proj-" + "a1B2" * 10 + " ok", f"{tok('openai_key')} ok"),
    ("openai_key", "k=sk-" + "Q" * 20 + "T3BlbkFJ" + "w" * 20, f"k={tok('openai_key')}"),
    ("openai_key", "sk-" + "aZ09" * 12, tok("openai_key")),
    ("aws_access_key", "id AKIAQ3EGSXNMJ5W2ZV7A,", f"id {tok('aws_access_key')},"),
    ("aws_access_key", '"ASIAQ3EGSXNMJ5W2ZV7A"', f'"{tok("aws_access_key")}"'),
    ("aws_secret_key", "aws_secret_access_key = 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",
     f"aws_secret_access_key = {tok('aws_secret_key')}"),
    ("aws_secret_key", '"SecretAccessKey": "Q3EGSXNMJ5W2ZV7Aab/cdef+ghijklmnopqrstu1"',
     f'"SecretAccessKey": "{tok("aws_secret_key")}"'),
    ("github_token", f"token {GHP}.", f"token {tok('github_token')}."),
    ("github_token", "github_pat_" + "11ABCDEFG0" * 8 + "xy", tok("github_token")),
    ("github_token", f"https://x-access-token:{GHP}@github.com/o/r",
     f"https://x-access-token:{tok('github_token')}@github.com/o/r"),
    ("gitlab_token", "PRIVATE-TOKEN: glpat-Ab1Cd2Ef3Gh4Ij5Kl6Mn", f"PRIVATE-TOKEN: {tok('gitlab_token')}"),
    ("gitlab_token", "GR1348941Ab1Cd2Ef3Gh4Ij5Kl6Mn", tok("gitlab_token")),
    ("slack_token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
     tok("slack_token")),
    ("slack_webhook", "https://hooks.slack.com/services/T0AB12CD3/B0AB12CD3/abcdefGHIJKL0123456789xy",
     f"https://hooks.slack.com/services/{tok('slack_webhook')}"),
    ("stripe_key", "stripe.api_key = sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
     f"stripe.api_key = {tok('stripe_key')}"),
    ("stripe_key", "rk_test_" + "4eC39HqLyjWDarjtT1zdp7dc", tok("stripe_key")),
    ("stripe_key", "whsec_" + "a1b2C3d4" * 4, tok("stripe_key")),
    ("google_api_key", "?key=AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY&x=1",
     f"?key={tok('google_api_key')}&x=1"),
    ("jwt", f"id_token={JWT} next", f"id_token={tok('jwt')} next"),
    ("jwt", f'"{JWT}"', f'"{tok("jwt")}"'),
    ("private_key", f"key:\n{PEM}\nafter", f"key:\n{tok('private_key')}\nafter"),
    ("url_password", "postgres://user:pass@host/db", f"postgres://user:{tok('url_password')}@host/db"),
    ("url_password", "redis://:s3cr3t@cache:6379/0", f"redis://:{tok('url_password')}@cache:6379/0"),
    ("authorization_header", "Authorization: Bearer abc.def",
     f"Authorization: Bearer {tok('authorization_header')}"),
    ("authorization_header", '{"authorization": "token ghx1234abcd"}',
     f'{{"authorization": "token {tok("authorization_header")}"}}'),
    ("authorization_header", "Bearer eyJ0eXAi0iJKV1QiLCJhb.x1",
     f"Bearer {tok('authorization_header')}"),
    ("authorization_header", "Basic " + base64.b64encode(b"admin:hunter2").decode(),
     f"Basic {tok('authorization_header')}"),
    ("env_secret", "export OPENROUTER_API_KEY=or-v1-abc123 && run",
     f"export OPENROUTER_API_KEY={tok('env_secret')} && run"),
    ("env_secret", 'MY_SERVICE_TOKEN="x9y8z7"', f'MY_SERVICE_TOKEN="{tok("env_secret")}"'),
    ("env_secret", "  SENTRY_SECRET: abc123def", f"  SENTRY_SECRET: {tok('env_secret')}"),
    ("password", "password=hunter2 next", f"password={tok('password')} next"),
    ("password", '{"password": "correct horse"}', f'{{"password": "{tok("password")}"}}'),
    ("password", "mysql --password hunter2 -u root", f"mysql --password {tok('password')} -u root"),
    ("password", "db_password: Pa55w0rd!", f"db_password: {tok('password')}"),
    ("password", "curl -u admin:Pa55word https://x", f"curl -u admin:{tok('password')} https://x"),
    ("password", '{\\"passwd\\": \\"s3cret\\"}', f'{{\\"passwd\\": \\"{tok("password")}\\"}}'),
    ("secret_assignment", "api_key=abc123def456", f"api_key={tok('secret_assignment')}"),
    ("secret_assignment", "X-Api-Key: 9f8e7d6c5b", f"X-Api-Key: {tok('secret_assignment')}"),
    ("secret_assignment", "client_secret: 'q1w2e3r4'", f"client_secret: '{tok('secret_assignment')}'"),
    ("secret_assignment", "--api-key k3y-v4lue run", f"--api-key {tok('secret_assignment')} run"),
    # A name whose first keyword is not a secret's ("tokens...") may end in one that is.
    ("secret_assignment", "tokens_token=Zq9xW2kLm8Pq", f"tokens_token={tok('secret_assignment')}"),
    ("secret_assignment", "tokens_api_token: Zq9xW2kL", f"tokens_api_token: {tok('secret_assignment')}"),
    ("password", "passwords_password=hunter2x", f"passwords_password={tok('password')}"),
    ("credit_card", "card 4111 1111 1111 1111 exp", "card ***CREDIT_CARD*** exp"),
    ("credit_card", "amex 3782-822463-10005", "amex ***CREDIT_CARD***"),
    ("credit_card", "n=5555555555554444;", "n=***CREDIT_CARD***;"),
    ("email", "mail me: john.doe+x@acme.io.", "mail me: ***EMAIL***."),
    ("email", "Author: Jane <jane_d@mail.co.uk>", "Author: Jane <***EMAIL***>"),
    ("private_ipv4", "hosts 10.0.0.5, 192.168.1.20:8080 and 172.31.255.1",
     "hosts ***PRIVATE_IP***, ***PRIVATE_IP***:8080 and ***PRIVATE_IP***"),
    ("private_ipv4", "link 169.254.10.1 cgnat 100.64.0.1", "link ***PRIVATE_IP*** cgnat ***PRIVATE_IP***"),
    ("private_ipv6", "inet6 fe80::1ff:fe23:4567:890a%eth0 scope link",
     "inet6 ***PRIVATE_IP*** scope link"),
    ("private_ipv6", "[fd12:3456:789a::1]:443", "[***PRIVATE_IP***]:443"),
]

# (rule whose near-miss this is, text that must come through unchanged)
NEGATIVE: list[tuple[str, str]] = [
    ("anthropic_key", "sk-ant-api03-short"),
    ("anthropic_key", "task-ant-api03-" + "a" * 30),
    ("openai_key", "sk-" + "a" * 47),
    ("openai_key", "disk-" + "a1" * 30),
    ("openai_key", "sk-proj-tooShort"),
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key", "AKIA1234"),
    ("aws_access_key", "XAKIAQ3EGSXNMJ5W2ZV7A"),
    ("aws_access_key", "TODAYINASIAASACKOFRICEFELLOVER"),
    ("aws_secret_key", "aws_secret_access_key_id = 12"),
    ("aws_secret_key", "aws_secret_access_key = os.environ['AWS_SECRET_ACCESS_KEY']"),
    ("github_token", "ghp_short123"),
    ("github_token", "xghp_" + "a" * 36),
    ("gitlab_token", "glpat-short"),
    ("gitlab_token", "global-settings-are-loaded-from-disk"),
    ("slack_token", "xoxb-123"),
    ("slack_token", "xoxo-hugs-and-kisses"),
    ("slack_webhook", "https://hooks.slack.com/services/"),
    ("slack_webhook", "see hooks.slack.com/apps for details"),
    ("stripe_key", "pk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("stripe_key", "sk_live_short"),
    ("stripe_key", "desk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("google_api_key", "AIzaShort"),
    ("google_api_key", "xAIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"),
    ("jwt", "key.eyebrow.values"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9"),
    ("private_key", '_SK_START = b"-----BEGIN OPENSSH PRIVATE KEY-----"'),
    ("private_key", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n"),
    ("url_password", "https://example.com:8080/path@v2"),
    ("url_password", "clickhouse://[user:password]@localhost:9000/default"),
    ("url_password", "ssh://git@github.com/org/repo.git"),
    ("authorization_header", "Bearer tokens are sent in the Authorization header."),
    ("authorization_header", 'headers = {"Authorization": f"Bearer {token}"}'),
    ("authorization_header", "authorization = request.headers.get('Authorization')"),
    ("authorization_header", "Basic authentication is disabled"),
    ("env_secret", "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}"),
    ("env_secret", "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}"),
    ("env_secret", "API_KEY = 0"),
    ("env_secret", "export OPENAI_API_KEY=$(cat ~/.openai)"),
    ("env_secret", "PWD=/home/dev/project"),
    ("password", "def login(password: str) -> None:"),
    ("password", "self.password = hashed"),
    ("password", "password = getpass.getpass()"),
    ("password", "if password != confirm_password:"),
    ("password", "password_reset_url = reverse('password_reset')"),
    ("password", "tests passed: 12, failed: 0"),
    ("password", "def f(raw, password=None):"),
    ("password", ":param password: the user's password"),
    ("password", "docker run --user 1000:1000 image"),
    ("secret_assignment", "input_tokens=1234 output_tokens=56"),
    ("secret_assignment", "token_count = len(tokens)"),
    ("secret_assignment", "secret_name: prod/db"),
    ("secret_assignment", '"input_token": "nextToken"'),
    ("secret_assignment", "tokenizer: cl100k_base"),
    ("secret_assignment", "auth_type: oauth2"),
    ("secret_assignment", "public_key = load(path)"),
    ("secret_assignment", "{'token_count_request': error_render_index}"),
    ("credit_card", "4111111111111112"),
    ("credit_card", "ts 1732627200000000 us"),
    ("credit_card", "mpf(368983957219251)"),
    ("credit_card", "v4111111111111111"),
    ("credit_card", "1234 5678 9012 3456"),
    ("email", "git@github.com:acme/repo.git"),
    ("email", "Co-Authored-By: Claude <noreply@anthropic.com>"),
    ("email", "test@example.com and ops@corp.test"),
    ("email", "image@2x.png"),
    ("email", "@pytest.fixture and npm i left-pad@1.3.0"),
    ("email", "aes256-gcm@openssh.com"),
    ("private_ipv4", "8.8.8.8 and 140.82.112.3"),
    ("private_ipv4", "127.0.0.1:8000"),
    ("private_ipv4", "version 10.0.19041.1"),
    ("private_ipv4", "172.32.0.1 and 192.169.1.1 and 10.0.0.256"),
    ("private_ipv4", "IMDS at 169.254.169.254"),
    ("private_ipv6", "2001:db8::1 and ::1"),
    ("private_ipv6", "face:b00c and fdopen()"),
    ("private_ipv6", 'ULA_SUBNET = new Address6("fc00::/7"); LINK = "fe80::/10"'),
    ("private_ipv4", "should be specified as a CIDR block, like '10.0.0.0/8'."),
]


def test_every_rule_has_a_positive_and_negatives() -> None:
    builtin = RULE_NAMES - {"high_entropy"}
    assert {rule for rule, _, _ in POSITIVE} == builtin
    negatives = {rule for rule, _ in NEGATIVE}
    assert negatives == builtin
    assert all(sum(1 for r, _ in NEGATIVE if r == rule) >= 2 for rule in builtin)


@pytest.mark.parametrize(("rule", "text", "expected"), POSITIVE)
def test_rule_redacts_only_the_secret(rule: str, text: str, expected: str) -> None:
    new, fired = R.redact_text(text)
    assert new == expected
    # A contextual rule may fire on the same span too (a token assigned to "token:"); the
    # token's own rule wins the name.
    assert fired[0] == rule


@pytest.mark.parametrize(("rule", "text"), NEGATIVE)
def test_near_miss_is_kept(rule: str, text: str) -> None:
    assert R.redact_text(text) == (text, [])


@pytest.mark.parametrize(("rule", "text", "expected"), POSITIVE)
def test_rule_can_be_switched_off(rule: str, text: str, expected: str) -> None:
    off = Redactor(RedactionSettings(rules={rule: False}))
    assert rule not in off.redact_text(text)[1]


def test_loopback_is_opt_in() -> None:
    on = Redactor(RedactionSettings(redact_loopback=True))
    assert on.redact_text("127.0.0.1:8000 and ::1") == (
        "***PRIVATE_IP***:8000 and ***PRIVATE_IP***",
        ["private_ipv4", "private_ipv6"],
    )


def test_high_entropy_is_off_by_default_and_catches_random_tokens_when_on() -> None:
    blob = "q8Zr2LmX9vTf4KcW7pYb1NsHd6GjE3Ua"
    assert R.redact_text(f"data {blob}") == (f"data {blob}", [])
    on = Redactor(RedactionSettings(rules={"high_entropy": True}))
    assert on.redact_text(f"data {blob}") == (f"data {tok('high_entropy')}", ["high_entropy"])
    for kept in ("a" * 40, "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39",
                 "550e8400-e29b-41d4-a716-446655440000", "src/components/UserProfileCard.tsx"):
        assert on.redact_text(kept) == (kept, [])


def test_overlapping_matches_merge_under_the_more_specific_rule() -> None:
    new, fired = R.redact_text(f"Authorization: Bearer {JWT}")
    assert new == f"Authorization: Bearer {tok('jwt')}"
    assert fired == ["jwt", "authorization_header"]
    new, fired = R.redact_text(f"GITHUB_TOKEN={GHP}")
    assert new == f"GITHUB_TOKEN={tok('github_token')}"
    assert fired == ["github_token", "env_secret"]


def test_secret_after_an_escaped_newline_is_found() -> None:
    # JSON text inside a JSON string: "\n" is two characters, the n glued to the secret.
    text = "line1\\n" + GHP + "\\njane@acme.io\\npassword=hunter2x\\nfd00::1\\n10.0.0.1"
    assert R.redact_text(text) == (
        f"line1\\n{tok('github_token')}\\n***EMAIL***\\npassword={tok('password')}"
        "\\n***PRIVATE_IP***\\n***PRIVATE_IP***",
        ["github_token", "password", "email", "private_ipv4", "private_ipv6"],
    )
