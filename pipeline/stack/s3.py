"""The S3-protocol test endpoint of the local stack: moto in server mode on loopback."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

from pipeline.errors import PrerequisiteError
from pipeline.settings import StackSettings
from pipeline.stack.process import ManagedProcess, port_open, wait_for


class S3Stack:
    """moto keeps objects in memory: right for tests of the S3 code path, not for keeping data."""

    def __init__(self, stack: StackSettings) -> None:
        self.stack = stack
        self.process = ManagedProcess("s3", stack.dir / "run", stack.dir / "logs")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.stack.s3_port}"

    def start(self) -> bool:
        if self.process.is_running():
            return False
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise PrerequisiteError(
                "moto[server] is not installed in this environment: pip install -e '.[dev]'"
            ) from exc
        if port_open("127.0.0.1", self.stack.s3_port):
            raise PrerequisiteError(
                f"port {self.stack.s3_port} is taken; set AGENTWATCH_STACK__S3_PORT"
            )
        self.process.start(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.stack.s3_port)]
        )
        return True

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout_s: float) -> None:
        if not wait_for(self.healthy, timeout_s):
            raise PrerequisiteError(
                f"the S3 endpoint did not answer within {timeout_s:.0f}s:\n{self.process.log_tail()}"
            )

    def stop(self) -> bool:
        return self.process.stop(timeout_s=10)
