"""Token verification: what must be refused, RS256 with a public key, query-string rules."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from consumers.gateway.auth import Authenticator, AuthError, Principal, Role, resolve_secret
from pipeline.settings import GatewaySettings

SECRET = "unit-test-secret-0123456789abcdef"


def claims(**over: Any) -> dict[str, Any]:
    # Parametrize builds these at collection time, possibly many minutes before the test runs:
    # a short lifetime would turn every refusal reason into "expired".
    now = int(time.time())
    return {"sub": "alice", "role": "viewer", "aud": "agentwatch", "iss": "agentwatch",
            "iat": now, "exp": now + 7 * 24 * 3600, **over}


def hs() -> Authenticator:
    return Authenticator(GatewaySettings(jwt_secret=SecretStr(SECRET)), SECRET)


async def test_valid_token_gives_the_principal() -> None:
    p = await hs().verify(jwt.encode(claims(role="admin"), SECRET, algorithm="HS256"))
    assert p == Principal("alice", Role.ADMIN, "access")


@pytest.mark.parametrize(("token_claims", "key", "reason"), [
    (claims(exp=int(time.time()) - 120), SECRET, "expired"),
    (claims(aud="someone-else"), SECRET, "audience"),
    (claims(iss="evil"), SECRET, "issuer"),
    (claims(), "a-different-secret-0123456789abcdef", "signature"),
    (claims(role="root"), SECRET, "role"),
    ({k: v for k, v in claims().items() if k != "exp"}, SECRET, "invalid"),
])
async def test_refusals(token_claims: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(AuthError) as err:
        await hs().verify(jwt.encode(token_claims, key, algorithm="HS256"))
    assert err.value.reason == reason


async def test_alg_none_and_unlisted_algorithms_are_refused() -> None:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    with pytest.raises(AuthError) as err:
        await hs().verify(f"{b64({'alg': 'none'})}.{b64(claims(role='admin'))}.")
    assert err.value.reason == "algorithm"
    with pytest.raises(AuthError) as err:
        await hs().verify(jwt.encode(claims(), SECRET * 2, algorithm="HS512"))
    assert err.value.reason == "algorithm"


async def test_rs256_with_a_public_key_and_no_confusion_with_hmac(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    (tmp_path / "pub.pem").write_text(pem)
    auth = Authenticator(GatewaySettings(jwt_algorithms=("RS256",),
                                         jwt_public_key=str(tmp_path / "pub.pem")), None)
    assert (await auth.verify(jwt.encode(claims(), key, algorithm="RS256"))).user == "alice"
    # The classic confusion attack: HS256 signed with the public key as the secret.
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing = (b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "."
               + b64(json.dumps(claims(role="admin")).encode()))
    mac = hmac.new(pem.encode(), signing.encode(), hashlib.sha256).digest()
    forged = f"{signing}.{b64(mac)}"
    with pytest.raises(AuthError):
        await auth.verify(forged)


async def test_query_string_takes_only_short_lived_ws_tokens() -> None:
    auth = hs()
    ws = auth.mint("alice", Role.VIEWER, 60, token_type="ws")
    assert (await auth.verify(ws, from_query=True)).token_type == "ws"
    with pytest.raises(AuthError) as err:
        await auth.verify(auth.mint("alice", Role.VIEWER, 3600), from_query=True)
    assert err.value.reason == "query_token"
    with pytest.raises(AuthError):
        await auth.verify(auth.mint("alice", Role.VIEWER, 3600, token_type="ws"), from_query=True)


def test_rbac_owner_or_admin_and_ownerless_for_admins() -> None:
    viewer, admin = Principal("alice", Role.VIEWER), Principal("root", Role.ADMIN)
    assert viewer.may_see("alice") and not viewer.may_see("bob") and not viewer.may_see(None)
    assert admin.may_see("bob") and admin.may_see(None)


def test_local_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    first = resolve_secret(GatewaySettings(), tmp_path)
    assert resolve_secret(GatewaySettings(), tmp_path) == first and len(first) >= 32
    assert (tmp_path / "gateway.secret").stat().st_mode & 0o777 == 0o600
    assert resolve_secret(GatewaySettings(jwt_secret=SecretStr("explicit")), tmp_path) == "explicit"
