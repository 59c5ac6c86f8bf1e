"""The hand-written OpenAPI document names exactly the HTTP routes the app registers."""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import SecretStr

from consumers.gateway.app import create_app
from pipeline.settings import GatewaySettings, Settings

DOC = Path(__file__).resolve().parents[4] / "consumers" / "gateway" / "openapi.json"
WEBSOCKETS = {"/sessions", "/sessions/{session_id}"}
NOT_API = {"/", "/static", "/sw.js"}


def test_openapi_matches_registered_routes(tmp_path: Path) -> None:
    settings = Settings(gateway=GatewaySettings(jwt_secret=SecretStr("x" * 32)),
                        stack={"dir": tmp_path})
    app = create_app(settings, kafka=False, clickhouse=False)
    registered: set[tuple[str, str]] = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix", "")
        if route.method == "HEAD" or path in WEBSOCKETS or path in NOT_API or path.rstrip("/") in NOT_API:
            continue
        registered.add((route.method.lower(), path))
    spec = json.loads(DOC.read_text())
    assert spec["openapi"].startswith("3.")
    documented = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert documented == registered
    for path, ops in spec["paths"].items():
        for op in ops.values():
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"{(\w+)}", path)), path
