"""Helpers of the browser tests: the real components as subprocesses, tokens, hooks, layout checks.

Each test module starts its own worker/collector/gateway (and whatever else it needs) on free
ports with topics of its own, against the shared Kafka (and ClickHouse where asked), so it
never touches the running local stack's data.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from playwright.async_api import ViewportSize

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "e2e" / "artifacts"
HOOKS = json.loads((REPO / "tests" / "data" / "claude_code_hooks.json").read_text())
SECRET = "e2e-secret-0123456789abcdef0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PHONE: ViewportSize = {"width": 375, "height": 812}
DESKTOP: ViewportSize = {"width": 1440, "height": 900}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    health: str
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    out: Any = None

    def start(self, timeout_s: float = 90.0) -> None:
        self.out = self.log.open("ab")
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=self.out,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.out.close()
                raise AssertionError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.health, timeout=1) as r:
                    body = json.loads(r.read())
                if body.get("healthy") and body.get("caught_up", True) is not False:
                    return
            except Exception:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"{self.name} not healthy: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.out is not None:
            self.out.close()
            self.out = None

    def get_json(self, path: str) -> Any:
        with urllib.request.urlopen(self.health.rsplit("/", 1)[0] + path, timeout=5) as r:
            return json.loads(r.read())


@dataclass
class Pipeline:
    collector_url: str
    gateway_url: str
    gateway: Proc
    prefix: str
    env: dict[str, str]
    procs: dict[str, Proc] = field(default_factory=dict)

    def post_hook(self, payload: dict[str, Any], user: str | None = None) -> None:
        headers = {"Content-Type": "application/json"}
        if user is not None:
            headers["X-Agentwatch-User"] = user
        req = urllib.request.Request(f"{self.collector_url}/hooks", data=json.dumps(payload).encode(),
                                     headers=headers)
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 200

    def api(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, bytes]:
        """A REST call to the gateway, as the dashboard makes it (bearer token)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.gateway_url}{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()


def token(user: str, role: str = "viewer", ttl_s: int = 3600) -> str:
    now = int(time.time())
    return jwt.encode({"sub": user, "role": role, "aud": "agentwatch", "iss": "agentwatch",
                       "iat": now, "exp": now + ttl_s}, SECRET, algorithm="HS256")


def admin_token() -> str:
    return token("e2e-admin", "admin")


def hook(name: str, session_id: str, **over: Any) -> dict[str, Any]:
    payload: dict[str, Any] = copy.deepcopy(HOOKS[name])
    payload["session_id"] = session_id
    if "tool_use_id" in payload:
        payload["tool_use_id"] = f"toolu_{uuid.uuid4().hex[:16]}"
    payload.update(over)
    return payload


# The command each component is started with, and the settings section of its HTTP port.
COMPONENTS: dict[str, tuple[list[str], str]] = {
    "worker": (["worker"], "WORKER_HTTP"),
    "archive": (["sink", "archive"], "ARCHIVE_SINK_HTTP"),
    "clickhouse": (["sink", "clickhouse"], "CLICKHOUSE_SINK_HTTP"),
    "collector": (["collector"], "COLLECTOR"),
    "sampler": (["sampler"], "SAMPLER"),
    "gateway": (["gateway"], "GATEWAY"),
}


@contextlib.contextmanager
def running_pipeline(work: Path, kafka_bootstrap: str, components: list[str],
                     extra_env: dict[str, str] | None = None) -> Iterator[Pipeline]:
    """Starts the components in order (each healthy before the next) and stops them in reverse;
    deletes the run's topics afterwards."""
    prefix = f"e2e{uuid.uuid4().hex[:8]}"
    ports = {name: free_port() for name in components}
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update({
        "AGENTWATCH_KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
        **{f"AGENTWATCH_TOPICS__{t.upper()}": f"{prefix}.{t}"
           for t in ("ingest", "events", "widgets", "patterns", "dlq", "replay")},
        "AGENTWATCH_TOPICS__PARTITIONS": "2",
        "AGENTWATCH_WORKER__APP_ID": prefix,
        "AGENTWATCH_GATEWAY__JWT_SECRET": SECRET,
        "AGENTWATCH_ARCHIVE__TARGET": (work / "archive").as_uri(),
        "AGENTWATCH_ARCHIVE__CONSUMER_GROUP": f"{prefix}-archive",
        "AGENTWATCH_ARCHIVE__SEGMENT_MAX_AGE_S": "0.5",
        "AGENTWATCH_CLICKHOUSE_SINK__GROUP_ID": f"{prefix}-clickhouse",
        "AGENTWATCH_STACK__DIR": str(work / "stack"),
        "AGENTWATCH_LOG_FORMAT": "text",
        # The worker's aiokafka has no lz4 library here (the producers' default codec): gzip.
        "AGENTWATCH_PRODUCER__COMPRESSION": "gzip",
        **{f"AGENTWATCH_{COMPONENTS[name][1]}__PORT": str(port) for name, port in ports.items()},
    })
    if "collector" in ports:
        env["AGENTWATCH_SAMPLER__COLLECTOR_URL"] = f"http://127.0.0.1:{ports['collector']}"
    env.update(extra_env or {})
    cli = [sys.executable, "-m", "pipeline.cli"]
    procs = {name: Proc(name, cli + COMPONENTS[name][0], env,
                        f"http://127.0.0.1:{ports[name]}/health", work / f"{name}.log")
             for name in components}
    started: list[Proc] = []
    try:
        for p in procs.values():
            started.append(p)
            p.start()
        yield Pipeline(f"http://127.0.0.1:{ports.get('collector', 0)}",
                       f"http://127.0.0.1:{ports.get('gateway', 0)}", procs["gateway"], prefix,
                       env, procs)
    finally:
        for p in reversed(started):
            p.stop()
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for fut in admin.delete_topics(mine, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result()


async def no_horizontal_overflow(page: Any) -> bool:
    return bool(await page.evaluate(
        "document.documentElement.scrollWidth <= window.innerWidth + 1"))


async def small_targets(page: Any) -> list[str]:
    """Visible interactive elements under 44x44 px (the design's touch target)."""
    return list(await page.evaluate("""() => [...document.querySelectorAll(
        'button, .filters label, .toggle, .session-card, select, .choices label, .nav a, '
        + 'input[type=number], input[type=text]')]
        .filter(e => e.offsetParent !== null)
        .map(e => [e, e.getBoundingClientRect()])
        .filter(([e, r]) => r.height < 44 || r.width < 44)
        .map(([e, r]) => (e.id || e.textContent.trim().slice(0, 20))
             + ' ' + Math.round(r.width) + 'x' + Math.round(r.height))"""))
