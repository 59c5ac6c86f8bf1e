"""The command hook: settings like pipeline.settings, delivery, inbox fallback, exit 0, light imports."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.settings import REPO_ROOT, load_settings
from producers import hook_cmd, inbox

HOOK = b'{"session_id": "s1", "hook_event_name": "Stop"}'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OneShotServer:
    """Answers each connection with ``status`` and records the request bytes."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest)
                conn.sendall(f"HTTP/1.1 {self.status} X\r\nContent-Length: 0\r\n\r\n".encode())

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    values = {"AGENTWATCH_COLLECTOR__INBOX_DIR": str(tmp_path / "inbox"),
              "AGENTWATCH_COLLECTOR__HOOK_LOG": str(tmp_path / "hook.log"),
              "AGENTWATCH_COLLECTOR__HOOK_TIMEOUT_S": "1.0"}
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AGENTWATCH_CONFIG", raising=False)
    yield values


def test_defaults_match_pipeline_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("AGENTWATCH_"):
            monkeypatch.delenv(key)
    settings = load_settings()
    config = hook_cmd.load_config()
    assert (config.host, config.port) == (settings.collector.host, settings.collector.port)
    assert config.timeout_s == settings.collector.hook_timeout_s
    assert Path(config.inbox_dir) == settings.collector.resolved_inbox_dir(settings.stack.dir)
    assert Path(config.hook_log) == settings.collector.resolved_hook_log(settings.stack.dir)
    assert str(REPO_ROOT) == hook_cmd.REPO_ROOT


def test_env_and_toml_resolve_like_pipeline_settings(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("AGENTWATCH_"):
            monkeypatch.delenv(key)
    toml = tmp_path / "aw.toml"
    toml.write_text('[collector]\nport = 14318\nhook_timeout_s = 0.5\n[stack]\ndir = "%s"\n'
                    % (tmp_path / "st"))
    monkeypatch.setenv("AGENTWATCH_CONFIG", str(toml))
    monkeypatch.setenv("AGENTWATCH_COLLECTOR__HOST", "127.0.0.2")
    settings = load_settings()
    config = hook_cmd.load_config()
    assert (config.host, config.port, config.timeout_s) == ("127.0.0.2", 14318, 0.5)
    assert (settings.collector.host, settings.collector.port) == ("127.0.0.2", 14318)
    assert Path(config.inbox_dir) == settings.collector.resolved_inbox_dir(settings.stack.dir)
    assert Path(config.inbox_dir) == tmp_path / "st" / "hook-inbox"


def test_sends_the_body_untouched_with_arrival_time_and_delivery_id(env: dict[str, str],
                                                                    monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    server = OneShotServer(200)
    monkeypatch.setenv("AGENTWATCH_COLLECTOR__PORT", str(server.port))
    try:
        assert hook_cmd.handle(HOOK, hook_cmd.load_config()) == "sent"
    finally:
        server.close()
    [request] = server.requests
    head, _, sent = request.partition(b"\r\n\r\n")
    assert sent == HOOK
    assert head.startswith(b"POST /hooks HTTP/1.1")
    assert b"X-Agentwatch-Received-Us: " in head and b"X-Agentwatch-Delivery-Id: " in head
    assert not Path(env["AGENTWATCH_COLLECTOR__INBOX_DIR"]).exists()


def test_collector_down_keeps_the_hook_in_the_inbox(env: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTWATCH_COLLECTOR__PORT", str(free_port()))
    assert hook_cmd.handle(HOOK, hook_cmd.load_config()) == "spooled"
    [path] = inbox.pending(env["AGENTWATCH_COLLECTOR__INBOX_DIR"])
    item = inbox.read(path)
    assert item.body == HOOK and item.delivery_id and item.received_us > 1_700_000_000_000_000
    log = Path(env["AGENTWATCH_COLLECTOR__HOOK_LOG"]).read_text()
    assert "ConnectionRefusedError" in log and "Stop" not in log  # never the payload


def test_server_error_spools_but_a_refusal_does_not(env: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    for status, outcome in ((503, "spooled"), (400, "rejected")):
        server = OneShotServer(status)
        monkeypatch.setenv("AGENTWATCH_COLLECTOR__PORT", str(server.port))
        try:
            assert hook_cmd.handle(HOOK, hook_cmd.load_config()) == outcome
        finally:
            server.close()
    assert len(inbox.pending(env["AGENTWATCH_COLLECTOR__INBOX_DIR"])) == 1


def test_main_exits_zero_whatever_happens(env: dict[str, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTWATCH_COLLECTOR__PORT", "not-a-port")
    assert hook_cmd.main(io.BytesIO(HOOK)) == 0
    monkeypatch.setenv("AGENTWATCH_COLLECTOR__PORT", str(free_port()))
    blocker = Path(env["AGENTWATCH_COLLECTOR__HOOK_LOG"]).parent / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("AGENTWATCH_COLLECTOR__INBOX_DIR", str(blocker / "inbox"))
    assert hook_cmd.main(io.BytesIO(HOOK)) == 0
    assert "hook failed" in Path(env["AGENTWATCH_COLLECTOR__HOOK_LOG"]).read_text()
    assert hook_cmd.main(io.BytesIO(b"")) == 0


def test_log_is_bounded(env: dict[str, str]) -> None:
    config = hook_cmd.load_config()
    for _ in range(3):
        Path(config.hook_log).write_text("x" * (hook_cmd.MAX_LOG_BYTES + 1))
        hook_cmd.log_error(config, "again")
    assert Path(config.hook_log).stat().st_size < 1000
    assert Path(config.hook_log + ".1").exists()


@pytest.mark.parametrize("mode", ["script", "cli"])
def test_command_runs_light_and_exits_zero(mode: str, env: dict[str, str], tmp_path: Path) -> None:
    """No Kafka client, Faust, pydantic or Avro on the hook's import path (both ways to run it)."""
    out = tmp_path / "modules.txt"
    record = (f"import atexit, sys; atexit.register(lambda: open({str(out)!r}, 'w').write("
              "'\\n'.join(sorted(sys.modules))))")
    script = str(REPO_ROOT / "producers" / "hook_cmd.py")
    if mode == "script":  # what install-hooks writes
        cmd = [sys.executable, "-S", "-c", f"{record}; import runpy; sys.argv = [{script!r}]; "
               f"runpy.run_path({script!r}, run_name='__main__')"]
    else:  # `agentwatch hook`
        cmd = [sys.executable, "-c", f"{record}; sys.argv = ['agentwatch', 'hook']; "
               "from pipeline.cli import main; sys.exit(main())"]
    environment = {**os.environ, **env, "AGENTWATCH_COLLECTOR__PORT": str(free_port())}
    proc = subprocess.run(cmd, input=HOOK, env=environment, capture_output=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    modules = set(out.read_text().split())
    assert "producers.inbox" in modules
    heavy = {m for m in modules if m.split(".")[0] in
             {"confluent_kafka", "faust", "pydantic", "pydantic_settings", "fastavro", "aiohttp",
              "google", "opentelemetry", "prometheus_client"}}
    assert not heavy
    assert len(inbox.pending(env["AGENTWATCH_COLLECTOR__INBOX_DIR"])) == 1
