"""JWT bearer authentication and the role model (viewer sees own sessions, admin sees all).

Tokens are verified with PyJWT against an explicit algorithm list (so ``alg: none`` and
algorithm-confusion tokens are refused before any key is used), with required ``exp``, ``sub``,
``aud`` and ``iss``. HS* tokens use the shared secret; RS*/ES* tokens a configured public key or
a JWKS endpoint (keys cached). Browsers cannot set headers on a WebSocket handshake, so a
short-lived token (``typ: ws``, minted by POST /api/ws-token) may travel in the query string;
a long-lived token never may.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt

from pipeline.errors import AgentwatchError, ConfigError
from pipeline.settings import GatewaySettings

SECRET_FILE = "gateway.secret"
WS_TOKEN_TYPE = "ws"
_HMAC = frozenset({"HS256", "HS384", "HS512"})
_LEEWAY_S = 10


class Role(StrEnum):
    VIEWER = "viewer"
    ADMIN = "admin"


class AuthError(AgentwatchError):
    """A request without a valid token (HTTP 401); ``reason`` is a short metric label."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class ForbiddenError(AgentwatchError):
    """A valid token that may not see what it asked for (HTTP 403)."""


@dataclass(frozen=True)
class Principal:
    user: str
    role: Role
    token_type: str = "access"

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def may_see(self, owner: str | None) -> bool:
        """RBAC on one session: its owner, or an admin. Sessions without an owner: admins only."""
        return self.is_admin or (owner is not None and owner == self.user)


def resolve_secret(conf: GatewaySettings, stack_dir: Path) -> str:
    """The HMAC secret: configured, else the local stack's generated one (created once, 0600)."""
    if conf.jwt_secret is not None and conf.jwt_secret.get_secret_value():
        return conf.jwt_secret.get_secret_value()
    path = stack_dir / SECRET_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once agree on whichever file was written first.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def _public_key(conf: GatewaySettings) -> str | None:
    key = conf.jwt_public_key
    if not key:
        return None
    if "-----BEGIN" in key:
        return key
    return Path(key).expanduser().read_text()


class Authenticator:
    """Verifies tokens; mints them for the HMAC case (``agentwatch token``, ws tokens)."""

    def __init__(self, conf: GatewaySettings, secret: str | None) -> None:
        self.conf = conf
        self.algorithms = list(conf.jwt_algorithms)
        if "none" in (a.lower() for a in self.algorithms):  # pragma: no cover - settings forbid it
            raise ConfigError("AGENTWATCH_GATEWAY__JWT_ALGORITHMS: 'none' is never accepted")
        self.secret = secret
        self.public_key = _public_key(conf)
        self._jwks: Any = None
        if conf.jwks_url:
            self._jwks = jwt.PyJWKClient(conf.jwks_url, cache_keys=True, lifespan=int(conf.jwks_cache_s))
        if any(a in _HMAC for a in self.algorithms) and not secret:
            raise ConfigError("HS* token algorithms need AGENTWATCH_GATEWAY__JWT_SECRET")
        if any(a not in _HMAC for a in self.algorithms) and not (self.public_key or self._jwks):
            raise ConfigError("RS*/ES* token algorithms need AGENTWATCH_GATEWAY__JWT_PUBLIC_KEY "
                              "or AGENTWATCH_GATEWAY__JWKS_URL")

    async def verify(self, token: str, *, from_query: bool = False) -> Principal:
        """The principal of a token; raises ``AuthError`` naming why not."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("malformed token", "malformed") from exc
        alg = str(header.get("alg", ""))
        if alg not in self.algorithms:
            raise AuthError(f"token algorithm {alg!r} not accepted", "algorithm")
        key: Any
        if alg in _HMAC:
            key = self.secret
        elif self._jwks is not None and header.get("kid"):
            try:
                # PyJWKClient does blocking HTTP; keys are cached, so this is rare.
                key = (await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)).key
            except jwt.PyJWTError as exc:
                raise AuthError(f"no key for token: {exc}", "key") from exc
        else:
            key = self.public_key
        if key is None:
            raise AuthError("no key for token", "key")
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=self.conf.jwt_audience,
                issuer=self.conf.jwt_issuer, leeway=_LEEWAY_S,
                options={"require": ["exp", "sub", "aud", "iss"]})
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired", "expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("wrong token audience", "audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("wrong token issuer", "issuer") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("bad token signature", "signature") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}", "invalid") from exc
        return self._principal(claims, from_query)

    def _principal(self, claims: dict[str, Any], from_query: bool) -> Principal:
        token_type = str(claims.get("typ") or "access")
        if from_query:
            # A URL ends up in logs and browser history: only a short-lived ws token goes there.
            lifetime = int(claims["exp"]) - int(claims.get("iat") or 0)
            if token_type != WS_TOKEN_TYPE or lifetime > self.conf.ws_token_ttl_s:
                raise AuthError("only a short-lived ws token may be sent in the URL", "query_token")
        user = str(claims["sub"])
        raw_role = claims.get("role")
        if raw_role is None and isinstance(claims.get("roles"), list):
            raw_role = Role.ADMIN.value if Role.ADMIN.value in claims["roles"] else Role.VIEWER.value
        try:
            role = Role(str(raw_role or Role.VIEWER.value))
        except ValueError as exc:
            raise AuthError(f"unknown role {raw_role!r}", "role") from exc
        if not user:
            raise AuthError("token has an empty subject", "invalid")
        return Principal(user, role, token_type)

    def mint(self, user: str, role: Role, ttl_s: int, *, token_type: str = "access",
             algorithm: str | None = None) -> str:
        """A signed HMAC token; the local stack's way to log in."""
        alg = algorithm or next((a for a in self.algorithms if a in _HMAC), None)
        if alg is None or not self.secret:
            raise ConfigError("minting needs an HS* algorithm and a secret "
                              "(AGENTWATCH_GATEWAY__JWT_ALGORITHMS, __JWT_SECRET)")
        now = int(time.time())
        claims = {"sub": user, "role": role.value, "aud": self.conf.jwt_audience,
                  "iss": self.conf.jwt_issuer, "iat": now, "exp": now + ttl_s, "typ": token_type}
        return jwt.encode(claims, self.secret, algorithm=alg)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
