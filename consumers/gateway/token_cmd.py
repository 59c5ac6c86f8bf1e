"""`agentwatch token --user U --role viewer`: mint a bearer token for the dashboard and the API.

Signs with the gateway's HMAC secret (the local stack's generated <stack dir>/gateway.secret
unless AGENTWATCH_GATEWAY__JWT_SECRET is set), so it works for the local stack out of the box.
"""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--user", required=True, help="user id (the token's subject)")
    parser.add_argument("--role", choices=("viewer", "admin"), default="viewer",
                        help="viewer sees own sessions, admin sees all (default viewer)")
    parser.add_argument("--ttl", type=int, help="lifetime in seconds (default gateway.token_ttl_s)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object with the token and the dashboard URL")


def run(args: argparse.Namespace) -> int:
    from consumers.gateway.auth import Authenticator, Role, resolve_secret
    from pipeline.settings import load_settings

    settings = load_settings()
    conf = settings.gateway
    secret = resolve_secret(conf, settings.stack.dir)
    auth = Authenticator(conf.model_copy(update={"jwt_public_key": None, "jwks_url": None,
                                                 "jwt_algorithms": ("HS256",)}), secret)
    ttl = args.ttl or conf.token_ttl_s
    token = auth.mint(args.user, Role(args.role), ttl)
    scheme = "https" if conf.tls_cert else "http"
    url = f"{scheme}://{conf.host}:{conf.port}/#token={token}"
    if args.json:
        print(json.dumps({"token": token, "user": args.user, "role": args.role,
                          "expires_in": ttl, "dashboard_url": url}))
    else:
        print(token)
    return 0
