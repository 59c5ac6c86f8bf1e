"""`agentwatch hook`: a Claude Code command hook that hands the hook JSON to the collector.

Reads the hook on stdin and POSTs it, untouched, to the collector's ``/hooks`` with the time it
arrived and a delivery id (so a retry maps to the same event ids). When the collector does not
answer (down, or slower than ``collector.hook_timeout_s``) or answers 5xx, the hook goes to the
inbox folder, which the collector drains when it is back. Whatever happens the command exits 0
at once: observability must never fail or slow the agent's action. Errors go to
``collector.hook_log`` (never the payload).

Light on purpose, it runs on every tool call: standard library only (no Kafka client, no
pydantic), a raw HTTP/1.1 request over ``_socket``, settings read from the same ``AGENTWATCH_*``
variables (and TOML file) as ``pipeline.settings`` without loading it. ``install-hooks`` runs
this file directly with ``python -S`` (no site-packages scan), which is the fastest start.
"""

from __future__ import annotations

# The C module behind `socket`: `import socket` pulls in enum, selectors and collections, and
# `socket.create_connection` the idna codec (getaddrinfo), together ~10 ms of the hook's start.
import _socket
import os
import sys
import time

if __package__ in (None, ""):  # run as a file (`python -S .../producers/hook_cmd.py`)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from producers import inbox

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import BinaryIO

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULTS = {"host": "127.0.0.1", "port": "4318", "hook_timeout_s": "2.0"}
MAX_LOG_BYTES = 1024 * 1024
MIN_FREE_BYTES = 64 * 1024 * 1024


class HookConfig:
    __slots__ = ("hook_log", "host", "inbox_dir", "port", "timeout_s", "user_id")

    def __init__(self, host: str, port: int, timeout_s: float, inbox_dir: str, hook_log: str,
                 *, user_id: str = "") -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        self.inbox_dir = inbox_dir
        self.hook_log = hook_log
        self.user_id = user_id  # privacy.user_id: sent as the hook's user_id (see with_user)


def _toml_sections(environ: dict[str, str]) -> dict[str, dict[str, object]]:
    path = environ.get("AGENTWATCH_CONFIG") or ("agentwatch.toml" if os.path.isfile("agentwatch.toml")
                                                else "")
    if not path:
        return {}
    import tomllib

    with open(path, "rb") as fh:
        doc = tomllib.load(fh)
    return {k: v for k, v in doc.items() if isinstance(v, dict)}


def load_config(environ: dict[str, str] | None = None) -> HookConfig:
    """The collector address and folders, resolved like ``pipeline.settings`` resolves them."""
    env = dict(os.environ if environ is None else environ)
    toml = _toml_sections(env)

    def get(section: str, key: str, default: str | None) -> str | None:
        value = env.get(f"AGENTWATCH_{section.upper()}__{key.upper()}")
        if value is None:
            raw = toml.get(section, {}).get(key)
            value = None if raw is None else str(raw)
        return value if value not in (None, "") else default

    stack_dir = get("stack", "dir", None) or os.path.join(REPO_ROOT, ".stack")
    stack_dir = os.path.abspath(os.path.expanduser(stack_dir))
    inbox_dir = get("collector", "inbox_dir", None) or os.path.join(stack_dir, "hook-inbox")
    hook_log = get("collector", "hook_log", None) or os.path.join(stack_dir, "logs", "hook.log")
    return HookConfig(
        host=get("collector", "host", DEFAULTS["host"]) or DEFAULTS["host"],
        port=int(get("collector", "port", DEFAULTS["port"]) or DEFAULTS["port"]),
        timeout_s=float(get("collector", "hook_timeout_s", DEFAULTS["hook_timeout_s"])
                        or DEFAULTS["hook_timeout_s"]),
        inbox_dir=os.path.expanduser(inbox_dir),
        hook_log=os.path.expanduser(hook_log),
        user_id=get("privacy", "user_id", "") or "",
    )


def with_user(body: bytes, user_id: str) -> bytes:
    """The hook object with a leading ``"user_id"`` member, spliced in without a JSON parse (this
    runs on every tool call). A ``user_id`` the body already has comes later and wins. Ids that
    are not printable, and bodies that are not a JSON object, are left alone."""
    if not user_id or not user_id.isprintable() or len(user_id) > 256:
        return body
    start = body.lstrip()
    if not start.startswith(b"{"):
        return body
    quoted = user_id.replace("\\", "\\\\").replace('"', '\\"')
    member = ('"user_id":"' + quoted + '"').encode("utf-8")
    rest = start[1:]
    return b"{" + member + (b"," if rest.lstrip()[:1] != b"}" else b"") + rest


def post(config: HookConfig, body: bytes, received_us: int, delivery_id: str) -> int:
    """POST the body to /hooks; returns the HTTP status. Raises OSError when nobody answers."""
    head = (
        f"POST /hooks HTTP/1.1\r\nHost: {config.host}:{config.port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Agentwatch-Received-Us: {received_us}\r\n"
        f"X-Agentwatch-Delivery-Id: {delivery_id}\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii")
    family = _socket.AF_INET6 if ":" in config.host else _socket.AF_INET
    sock = _socket.socket(family, _socket.SOCK_STREAM)
    try:
        sock.settimeout(config.timeout_s)
        sock.connect((config.host, config.port))
        sock.sendall(head + body)
        reply = b""
        while b"\r\n" not in reply and len(reply) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    finally:
        sock.close()
    parts = reply.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise OSError("the collector's answer is not HTTP")
    return int(parts[1])


def log_error(config: HookConfig, message: str, **fields: object) -> None:
    """One JSON line in the hook log, which is cut back to empty past 1 MiB (kept as .1)."""
    try:
        os.makedirs(os.path.dirname(config.hook_log) or ".", exist_ok=True)
        try:
            if os.path.getsize(config.hook_log) > MAX_LOG_BYTES:
                os.replace(config.hook_log, config.hook_log + ".1")
        except FileNotFoundError:
            pass
        import json  # only on this rare path: json costs the hook ~8 ms to import

        line = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "error",
                "logger": "agentwatch.hook", "msg": message, **fields}
        with open(config.hook_log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")
    except OSError:
        pass  # nowhere left to report to; the agent must still go on


def _room_for(folder: str) -> bool:
    try:
        probe = folder if os.path.isdir(folder) else os.path.dirname(folder) or "."
        while not os.path.isdir(probe):
            probe = os.path.dirname(probe) or "."
        stats = os.statvfs(probe)
    except OSError:
        return True
    return stats.f_bavail * stats.f_frsize >= MIN_FREE_BYTES


def handle(body: bytes, config: HookConfig) -> str:
    """Deliver one hook; returns what happened (``sent``, ``rejected``, ``spooled``, ``dropped``)."""
    received_us = time.time_ns() // 1000
    delivery_id = os.urandom(16).hex()
    if not body.strip():
        log_error(config, "empty hook body on stdin; nothing to send")
        return "dropped"
    body = with_user(body, config.user_id)
    try:
        status = post(config, body, received_us, delivery_id)
        if 200 <= status < 300:
            return "sent"
        if 400 <= status < 500:
            # The collector read it and recorded why it refused it; resending cannot help.
            log_error(config, "collector refused the hook", status=status, bytes=len(body))
            return "rejected"
        reason = f"collector answered {status}"
    except OSError as exc:
        reason = f"collector unreachable: {type(exc).__name__}"
    if not _room_for(config.inbox_dir):
        log_error(config, "hook dropped: collector unavailable and the disk is nearly full",
                  reason=reason, bytes=len(body))
        return "dropped"
    inbox.write(config.inbox_dir, body, received_us, delivery_id)
    log_error(config, "hook kept in the inbox for the collector", reason=reason, bytes=len(body))
    return "spooled"


def main(stdin: BinaryIO | None = None) -> int:
    """Entry point of the hook; always 0, whatever went wrong (it is logged instead)."""
    config: HookConfig | None = None
    try:
        config = load_config()
        stream = stdin if stdin is not None else sys.stdin.buffer
        body = stream.read()
        handle(body, config)
    except Exception as exc:  # the hook must never fail the agent's action
        if config is not None:
            log_error(config, "hook failed", error=type(exc).__name__)
    return 0


def configure(parser: argparse.ArgumentParser, name: str) -> None:
    parser.description = "Claude Code command hook: reads the hook JSON on stdin; always exits 0."


def run(args: argparse.Namespace) -> int:
    return main()


if __name__ == "__main__":
    sys.exit(main())
