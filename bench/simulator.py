"""Simulator: how fast sessions are generated, and how fast the driver can send them.

Run: .venv/bin/python bench/simulator.py [--sessions 200] [--lanes 50] [--url http://127.0.0.1:4318]
Without --url the driver sends to a do-nothing aiohttp server in the same process (one core for
both, so the send rate is a floor, not the driver's ceiling); with --url to a running collector
it prints the rate that collector sustained and its latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from aiohttp import web

from producers.simulator.driver import Driver, Target
from producers.simulator.run import generate, session_factory


async def _null_collector() -> tuple[web.AppRunner, str]:
    async def ok(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hooks", ok)
    app.router.add_post("/v1/logs", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def _drive(url: str | None, lanes: int, seed: str) -> dict[str, object]:
    runner = None
    if url is None:
        runner, url = await _null_collector()
    try:
        driver = Driver(Target.from_base(url), lanes=lanes)
        stats = await driver.run(session_factory("realistic", seed=seed))
        return stats.to_json()
    finally:
        if runner is not None:
            await runner.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--lanes", type=int, default=50)
    parser.add_argument("--url", default=None)
    args = parser.parse_args()

    started = time.perf_counter()
    scripts = generate(args.sessions, "realistic", seed="bench")
    elapsed = time.perf_counter() - started
    payloads = sum(len(s.steps) for s in scripts)
    print(f"generate: {args.sessions} sessions, {payloads} payloads in {elapsed:.2f} s "
          f"({args.sessions / elapsed:,.0f} sessions/s, {payloads / elapsed:,.0f} payloads/s)")
    stats = asyncio.run(_drive(args.url, args.lanes, "bench"))
    target = args.url or "in-process null server"
    print(f"drive {args.lanes} lanes -> {target}: {json.dumps(stats)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
