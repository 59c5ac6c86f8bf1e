"""The built-in redaction rules: names, token forms, and the patterns with their sources.

Patterns start from well-kept public rule sets, cited per rule: gitleaks' default config
(github.com/gitleaks/gitleaks, config/gitleaks.toml and cmd/generate/config/rules/*.go) and
Yelp's detect-secrets plugins (github.com/Yelp/detect-secrets, detect_secrets/plugins/*.py).
Where we deviate, the comment says why; the usual reason is that a redactor prefers a slightly
broader match (a truncated key is still a secret) over a scanner's low false-positive bar.

Two constraints shape every pattern here, because the engine runs them once over all strings of
an event joined by NUL (see engine.py):
- no pattern may match a NUL, so negated classes list ``\\x00`` and nothing uses ``.``/``[\\s\\S]``;
- no ``^``/``$``/``\\A``/``\\Z``: a lookaround behaves the same at a NUL as at a string edge, an
  anchor does not.
Patterns also start with a literal where possible, which lets ``re`` skip ahead with a fast
substring search instead of trying every position (measured: ~0.7 us per 2 KB vs 10-30 us).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RuleInfo:
    name: str
    description: str
    source: str
    short_token: str | None = None
    """Token body for rules whose redaction reads better short (``***EMAIL***``)."""
    default_enabled: bool = True


RULES: tuple[RuleInfo, ...] = (
    # Order is priority: when matches of two rules overlap they are merged and the token takes
    # the name of the earlier rule, so specific shapes come before contextual guesses.
    RuleInfo("private_key", "PEM/OpenSSH/PGP private key blocks", "gitleaks private-key"),
    RuleInfo("jwt", "JSON Web Tokens (header.payload[.signature])", "gitleaks jwt"),
    RuleInfo("anthropic_key", "Anthropic API, admin and OAuth keys (sk-ant-...)",
             "gitleaks anthropic-api-key, anthropic-admin-api-key, anthropic-oauth-token"),
    RuleInfo("openai_key", "OpenAI API keys (sk-proj-, sk-svcacct-, sk-admin-, legacy sk-)",
             "gitleaks openai-api-key; detect-secrets openai.py"),
    RuleInfo("aws_access_key", "AWS access key ids (AKIA/ASIA/ABIA/ACCA/A3T...)",
             "gitleaks aws-access-token; detect-secrets aws.py"),
    RuleInfo("aws_secret_key", "AWS secret access keys next to their variable name",
             "gitleaks aws-secret-access-key; detect-secrets aws.py get_secret_access_key"),
    RuleInfo("github_token", "GitHub tokens (ghp_/gho_/ghu_/ghs_/ghr_/github_pat_)",
             "gitleaks github-pat, github-oauth, github-app-token, github-refresh-token, "
             "github-fine-grained-pat"),
    RuleInfo("gitlab_token", "GitLab tokens (glpat-, gldt-, glrt-, glptt-, GR1348941...)",
             "gitleaks gitlab-* rules; docs.gitlab.com/ee/security/tokens (token prefixes)"),
    RuleInfo("slack_webhook", "Slack incoming-webhook paths (host kept)",
             "gitleaks slack-webhook-url; detect-secrets slack.py"),
    RuleInfo("slack_token", "Slack bot/user/app/config tokens (xox?-, xapp-)",
             "gitleaks slack-*-token; detect-secrets slack.py"),
    RuleInfo("stripe_key", "Stripe secret/restricted keys and webhook secrets",
             "gitleaks stripe-access-token; detect-secrets stripe.py; Stripe docs (whsec_)"),
    RuleInfo("google_api_key", "Google API keys (AIza...)", "gitleaks gcp-api-key"),
    RuleInfo("url_password", "Passwords in URL userinfo (scheme://user:PASSWORD@host)",
             "detect-secrets basic_auth.py, narrowed to RFC 3986 userinfo"),
    RuleInfo("authorization_header", "Authorization header credentials; bare Bearer/Basic",
             "gitleaks curl-auth-header; RFC 7235, RFC 6750 s2.1, RFC 7617"),
    RuleInfo("env_secret", "*_API_KEY= / *_TOKEN= / *_SECRET= / *_PASSWORD= assignments",
             "gitleaks generic-api-key keywords; detect-secrets keyword.py DENYLIST"),
    RuleInfo("password", "password/passwd/pwd values in key=value, key: value, JSON, flags",
             "detect-secrets keyword.py; gitleaks generic-api-key"),
    RuleInfo("secret_assignment", "secret/token/api key/credential values in the same forms",
             "detect-secrets keyword.py; gitleaks generic-api-key (+ its allowlist)"),
    RuleInfo("credit_card", "Payment card numbers (IIN prefix + length + Luhn)",
             "ISO/IEC 7812-1 (Luhn); IIN ranges per en.wikipedia.org/wiki/Payment_card_number",
             short_token="CREDIT_CARD"),
    RuleInfo("email", "Email addresses", "detect-secrets email_address.py (anchored on @)",
             short_token="EMAIL"),
    RuleInfo("private_ipv4", "IPv4 in 10/8, 172.16/12, 192.168/16, 169.254/16, 100.64/10",
             "RFC 1918, RFC 3927, RFC 6598; inverse of detect-secrets ip_public.py",
             short_token="PRIVATE_IP"),
    RuleInfo("private_ipv6", "IPv6 unique-local fc00::/7 and link-local fe80::/10",
             "RFC 4193, RFC 4291 s2.5.6", short_token="PRIVATE_IP"),
    RuleInfo("high_entropy", "Random-looking base64/hex tokens (Shannon entropy)",
             "detect-secrets high_entropy_strings.py", default_enabled=False),
)

RULE_NAMES: frozenset[str] = frozenset(r.name for r in RULES)
RULE_BY_NAME: dict[str, RuleInfo] = {r.name: r for r in RULES}

# --- token-shaped secrets -------------------------------------------------------------------
# Character classes are spelled out (never \w): \w is Unicode-aware in str patterns.

# gitleaks pins api03/admin01 to {93}AA and OAuth tokens to {40,}; any sk-ant-<kind><nn>- prefix
# with 16+ characters is accepted here so truncated and future key kinds are redacted too.
ANTHROPIC = r"sk-ant-[a-z]{2,12}[0-9]{2}-[A-Za-z0-9_-]{16,}"

# gitleaks: sk-(proj|svcacct|admin)-...T3BlbkFJ... and legacy sk-{20}T3BlbkFJ{20};
# detect-secrets: sk-[A-Za-z0-9-_]*[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}. The project/service
# prefixes alone are specific enough, and classic keys were sk- + 48 alphanumerics.
OPENAI = (
    r"sk-(?:(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,}"
    r"|[A-Za-z0-9_-]*[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20,}"
    r"|[A-Za-z0-9]{48}(?![A-Za-z0-9]))"
)

# gitleaks: \b((?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b. Real ids are base32
# ([A-Z2-7]); [A-Z0-9] also catches hand-made look-alikes. The leading \b is checked in Python
# (a lookbehind here would cost the literal-prefix scan).
AWS_ACCESS_KEY = r"A(?:3T[A-Z0-9]|KIA|SIA|BIA|CCA)[A-Z0-9]{16}(?![A-Za-z0-9])"

# aws_secret_key has no pattern of its own: a 40-character secret is only recognisable by the
# name it is assigned to (detect-secrets aws.py get_secret_access_key looks for "= value" next
# to the access key id), so keys.classify_key flags aws_secret_access_key, SecretAccessKey,
# AWS_SECRET_ACCESS_KEY and aws_secret_key and the key = value detector redacts the value.

# gitleaks: gh[pousr]_[0-9a-zA-Z]{36} and github_pat_\w{82}; lengths relaxed to catch
# truncated tokens (the prefixes are unambiguous).
GITHUB = r"gh[pousr]_[A-Za-z0-9]{30,}"
GITHUB_FINE_GRAINED = r"github_pat_[A-Za-z0-9_]{22,}"

# gitleaks gitlab-pat, -pat-routable, -ptt, -rrt, -runner-authentication-token, -deploy-token,
# -feed-token, -incoming-mail-token, -kubernetes-agent-token, -oauth-app-secret, -scim-token,
# -feature-flag-client-token, -cicd-job-token (prefix list from GitLab's token docs).
GITLAB = r"gl(?:pat|dt|ptt|rt|ft|imt|agent|oas|soat|ffct|cbt)-[A-Za-z0-9_.-]{20,}"
GITLAB_RUNNER_REG = re.compile(r"GR1348941[A-Za-z0-9_-]{20,}")

# gitleaks slack-webhook-url: (https?://)?hooks.slack.com/(services|workflows|triggers)/...
# Only the path is secret; the host is kept for context.
SLACK_WEBHOOK = re.compile(
    r"hooks\.slack\.com/(?:services|workflows|triggers)/([A-Za-z0-9+/_-]{20,})"
)
# detect-secrets: xox(?:a|b|p|o|s|r)-(?:\d+-)+[a-z0-9]+ (i): digits right after the type;
# gitleaks slack-legacy-workspace-token xox[ar]-(?:\d-)?[0-9a-zA-Z]{8,48}, and its xoxe- and
# xoxe.xox[bp]- config tokens and xapp- app tokens.
SLACK_TOKEN = (
    r"xox(?:[bpose]-[0-9]+-[A-Za-z0-9-]{8,}|[ar]-(?:[0-9]-)?[A-Za-z0-9]{8,48}"
    r"|e\.xox[bp]-[0-9]-[A-Za-z0-9]{20,})"
)
SLACK_APP_TOKEN = r"xapp-[0-9]-[A-Za-z0-9-]{10,}"

# gitleaks stripe-access-token: (?:sk|rk)_(?:test|live|prod)_[a-zA-Z0-9]{10,99}. Matched from
# "k_" so re can scan for the literal; the s/r before it is checked in Python.
STRIPE = re.compile(r"k_(?:test|live|prod)_[A-Za-z0-9]{10,}")
# Stripe webhook signing secrets (docs.stripe.com/webhooks "whsec_...").
STRIPE_WEBHOOK = re.compile(r"whsec_[A-Za-z0-9]{24,}")

# gitleaks gcp-api-key: \b(AIza[\w-]{35}); 30+ accepted for truncated keys.
GOOGLE_API_KEY = r"AIza[A-Za-z0-9_-]{30,}"

# Alternatives sharing a first literal run as one scan: re factors the common prefix out of
# the alternation and skips ahead by substring search; the rule is told by the match's prefix.
SK_TOKENS = re.compile(f"{ANTHROPIC}|{OPENAI}")
A_TOKENS = re.compile(f"{AWS_ACCESS_KEY}|{GOOGLE_API_KEY}")
G_TOKENS = re.compile(f"{GITHUB}|{GITHUB_FINE_GRAINED}|{GITLAB}")
X_TOKENS = re.compile(f"{SLACK_TOKEN}|{SLACK_APP_TOKEN}")

# gitleaks jwt: ey[a-zA-Z0-9]{17,}\.ey[a-zA-Z0-9\/\\_-]{17,}\.(?:[a-zA-Z0-9\/\\_-]{10,}={0,2})?
# Segment minimum lowered to 10 (a minimal {"alg":"none"} header is 20 chars; shorter claims
# still identify a token), signature optional (unsigned tokens are still bearer credentials).
JWT = re.compile(
    r"ey[A-Za-z0-9_-]{10,}={0,2}\.ey[A-Za-z0-9_-]{10,}={0,2}(?:\.[A-Za-z0-9_-]+={0,2})?"
)
JWT_PAYLOAD = re.compile(r"\.ey[A-Za-z0-9_-]{10}")

# gitleaks private-key: -----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----[\s\S-]{64,}?
# KEY(?: BLOCK)?-----. The body is bounded by NUL instead of [\s\S], and a block cut before
# its END line (excerpts, truncated fields) is redacted to the end of its base64 body.
PRIVATE_KEY = re.compile(
    r"-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[^\x00]{16,}?-----END[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----"
    r"|[A-Za-z0-9+/=\s\\:,.-]{16,})"
)

# --- contextual secrets ---------------------------------------------------------------------

# detect-secrets basic_auth.py: ://[^:]+:([^@]+)@ -- narrowed to RFC 3986 userinfo so a port
# or a path cannot be taken for a password (the password may not contain / @ ? # or space).
URL_PASSWORD = re.compile(r"://[^\s:/@?#\x00\"'<>]*:([^\s/@?#\x00\"'<>]+)@")

# RFC 7235 Authorization / Proxy-Authorization values (the header name is recognised by
# keys.classify_key). The scheme decides how much is secret: one token for bearer-like schemes,
# the rest of the line otherwise (Digest and AWS4-HMAC-SHA256 carry comma-separated parameters).
AUTH_SCHEME = re.compile(
    r"(?:\\?[\"'])?[ \t]*[:=][ \t]*(?:\\?[\"'])?[ \t]*(?:([A-Za-z][A-Za-z0-9-]*)[ \t]+)?"
)
ONE_TOKEN_SCHEMES = frozenset({"bearer", "basic", "token", "apikey", "negotiate", "ntlm", "dpop"})
AUTH_ONE_TOKEN = re.compile(r"[^\s\"'\\,;\x00]+")
AUTH_REST_OF_LINE = re.compile(r"[^\r\n\"'\\\x00]+")
# After a bare "Bearer" (no header name in sight): RFC 6750 s2.1 b64token, kept only if it has
# a digit ("Bearer authentication" is prose). After a bare "Basic": RFC 7617 token68, kept
# only if it decodes to "user:password". One scan on the lowercased text.
BARE_SCHEME = re.compile(
    r"b(?:earer[ \t]+([a-z0-9._~+/-]{8,}=*)|asic[ \t]+([a-z0-9+/]{6,}={0,2})(?![a-z0-9+/=]))"
)

# --- personal data --------------------------------------------------------------------------

# detect-secrets email_address.py: [\w+-]+(?:\.[\w+-]+)*@[\w+-]+(?:\.[\w+-]+)*(?:\.[a-zA-Z]{2,4})
# Anchored on "@" (the local part is found by walking back in Python: a pattern that starts
# with a class would be tried at every position, and quadratic on long runs of word chars).
EMAIL_DOMAIN = re.compile(r"@((?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                          r"[A-Za-z]{2,24})(?![A-Za-z0-9])")
EMAIL_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
# "image@2x.png" and friends: a file extension is not a top-level domain we expect in mail.
_FILE_EXTENSIONS = (
    "png jpg jpeg gif svg webp ico bmp js mjs cjs ts tsx jsx py pyc go rs java kt rb php css "
    "scss sass less json yaml yml toml ini cfg conf md rst txt csv tsv lock sh bash zsh html "
    "htm xml pdf zip gz tgz bz2 xz tar whl jar wasm map log bin so dylib dll exe o obj swift "
    "vue svelte sql proto avsc lua pl ex exs hs ml mp3 mp4 mov wav avi woff woff2 ttf otf"
)
FILE_EXTENSION_TLDS = frozenset(_FILE_EXTENSIONS.split())

# IPv4 candidates start with the first octet of a private range (group 1 holds it without its
# leading "1"); the octets, the range and the boundaries are checked in Python (faster than a
# regex that spells out 0-255, and easier to read).
IPV4 = re.compile(r"1(0|27|72|92|69|00)\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})")
# IPv6 ULA (fc00::/7: first hextet fc00-fdff) and link-local (fe80::/10: fe80-febf), on
# lowercased text; the candidate is validated with the ipaddress module.
IPV6_CANDIDATE = re.compile(
    r"(?:f[cd][0-9a-f]{2}|fe[89ab][0-9a-f]):[0-9a-f:]*(?:%[0-9a-z._-]+)?"
)
IPV6_LOOPBACK = re.compile(r"::1(?![0-9a-z:])")

# Card numbers are found on a digit-shape string (detectors.py) and checked in validators.py.

# detect-secrets Base64HighEntropyString charset (letters, digits, +/ -_ =); the engine
# compiles it with the configured minimum length.
ENTROPY_CHARSET = r"[A-Za-z0-9+/=_-]"

# Tokens the engine itself writes; never redacted again (idempotence on replays).
OWN_TOKEN = re.compile(r"\*\*\*(?:REDACTED:[a-z0-9_]+|[A-Z_]+)(?::[0-9a-f]{8})?\*\*\*")

# --- key = value grammar (password, secret_assignment, env_secret) ---------------------------
# detect-secrets keyword.py's FOLLOWED_BY_{COLON,EQUAL_SIGNS,QUOTES}... regexes folded into one
# grammar that starts right after a key name: an optional closing quote of the key (JSON, or
# \" inside an escaped JSON string), an operator, then a quoted or bare value. A value quoted
# with \" may not contain \n, \r or \t escapes: such a "value" is really the end of one string
# literal and the start of the next line; for the same reason a bare value ends at one. The key
# itself is found by keyword (assignments.py), never by a pattern that may start anywhere.
KV_VALUE = re.compile(
    r"(?P<kq>\\?[\"'])?"
    r"(?P<w1>[ \t]*)(?P<op>:=|=>|===?|!==?|=|:(?![:/\\]))(?P<w2>[ \t]*)"
    r"(?:\\\"(?P<v1>(?:[^\"\\\x00\r\n]|\\[^\"nrt\x00\r\n])*)\\\""
    r"|\"(?P<v2>(?:[^\"\\\x00\r\n]|\\[^\x00\r\n])*)\""
    r"|'(?P<v3>(?:[^'\\\x00\r\n]|\\[^\x00\r\n])*)'"
    r"|`(?P<v4>[^`\x00\r\n]*)`"
    r"|(?P<v5>(?:[^\s\"'`\x00&\\]|\\(?![nrt\"']))+))"
)
# --password VALUE (space-separated command-line flag).
CLI_VALUE = re.compile(
    r"[ \t]+(?:\"(?P<v2>(?:[^\"\\\x00\r\n]|\\[^\x00\r\n])*)\""
    r"|'(?P<v3>(?:[^'\\\x00\r\n]|\\[^\x00\r\n])*)'"
    r"|(?P<v5>(?:[^\s\"'`\x00&;|\\]|\\(?![nrt\"']))+))"
)
# gitleaks curl-auth-user: curl -u/--user user:password (only run when "curl" is present).
CURL_USER = re.compile(
    r"-(?:u|-user)(?:=|[ \t]+)[\"']?[^\s:\"'\x00]*:([^\s\"'\x00]+)"
)
