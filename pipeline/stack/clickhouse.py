"""ClickHouse for the local stack: Debian's clickhouse-server run with our own config, no systemd."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from pathlib import Path
from string import Template

from pipeline.errors import PrerequisiteError
from pipeline.settings import REPO_ROOT, ClickHouseSettings, StackSettings
from pipeline.stack.process import ManagedProcess, port_open, wait_for

TEMPLATE_DIR = REPO_ROOT / "deploy" / "local" / "clickhouse"
SERVER_CANDIDATES = ("/usr/bin/clickhouse-server", "/usr/sbin/clickhouse-server")


def find_server() -> str | None:
    found = shutil.which("clickhouse-server")
    if found:
        return found
    return next((c for c in SERVER_CANDIDATES if Path(c).is_file()), None)


class ClickHouseStack:
    def __init__(self, stack: StackSettings, clickhouse: ClickHouseSettings) -> None:
        self.stack = stack
        self.ch = clickhouse
        self.root = stack.dir / "clickhouse"
        self.process = ManagedProcess("clickhouse", stack.dir / "run", stack.dir / "logs")

    def install(self) -> bool:
        """apt-get install clickhouse-server when missing (as root); True if it installed."""
        if find_server() is not None:
            return False
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            raise PrerequisiteError(
                "clickhouse-server is not installed and cannot be installed automatically "
                "(needs root and apt-get). Install it with: sudo apt-get install clickhouse-server"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", "--no-install-recommends",
             "clickhouse-server", "clickhouse-client"],
        ):
            result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if result.returncode != 0:
                raise PrerequisiteError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
        return True

    def _render(self) -> Path:
        conf_dir = self.root / "conf"
        data_dir = self.root / "data"
        log_dir = self.stack.dir / "logs" / "clickhouse"
        for d in (conf_dir, data_dir, log_dir):
            d.mkdir(parents=True, exist_ok=True)
        text = Template((TEMPLATE_DIR / "config.xml.tmpl").read_text()).substitute(
            log_dir=log_dir,
            listen_host=self.ch.host,
            http_port=self.ch.http_port,
            tcp_port=self.ch.port,
            data_dir=data_dir,
        )
        config = conf_dir / "config.xml"
        config.write_text(text)
        shutil.copyfile(TEMPLATE_DIR / "users.xml", conf_dir / "users.xml")
        return config

    def start(self) -> bool:
        if self.process.is_running():
            return False
        server = find_server()
        if server is None:
            raise PrerequisiteError("clickhouse-server is not installed")
        for port in (self.ch.port, self.ch.http_port):
            if port_open(self.ch.host, port):
                raise PrerequisiteError(
                    f"port {port} is taken by another program (a system ClickHouse?); stop it or "
                    "set AGENTWATCH_CLICKHOUSE__PORT / AGENTWATCH_CLICKHOUSE__HTTP_PORT"
                )
        config = self._render()
        self.process.start([server, f"--config-file={config}"], cwd=config.parent)
        return True

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://{self.ch.host}:{self.ch.http_port}/ping", timeout=2
            ) as resp:
                return bool(resp.read().strip() == b"Ok.")
        except OSError:
            return False

    def wait_ready(self, timeout_s: float) -> None:
        if not wait_for(self.healthy, timeout_s):
            raise PrerequisiteError(
                f"ClickHouse did not answer /ping within {timeout_s:.0f}s; last log lines:\n"
                f"{self.process.log_tail()}"
            )

    def stop(self) -> bool:
        return self.process.stop(timeout_s=30)
