"""A gateway served in-process on a free port, reading fresh topics of the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from gateway_support import SECRET, GatewayUnderTest, free_port
from pydantic import SecretStr

from consumers.gateway.app import create_app
from pipeline.settings import ClickHouseSettings, GatewaySettings, Settings


@pytest.fixture
async def start_gateway(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], clickhouse: ClickHouseSettings,
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``await start_gateway(partitions=2, **gateway_overrides)``."""
    runners: list[web.AppRunner] = []

    async def start(partitions: int = 2, clickhouse_db: str | None = None,
                    **overrides: Any) -> GatewayUnderTest:
        widgets = kafka_topic("gw.widgets", partitions=partitions, **{"cleanup.policy": "compact"})
        patterns = kafka_topic("gw.patterns", partitions=partitions)
        replay = kafka_topic("gw.replay", partitions=1)
        port = free_port()
        settings = Settings(
            kafka={"bootstrap_servers": kafka_bootstrap},
            topics={"widgets": widgets, "patterns": patterns, "replay": replay,
                    "partitions": partitions},
            clickhouse=clickhouse.model_copy(update={"database": clickhouse_db or "default"}),
            gateway=GatewaySettings(port=port, jwt_secret=SecretStr(SECRET), **overrides),
            stack={"dir": tmp_path / "stack"},
            archive={"target": (tmp_path / "archive").as_uri()},
        )
        app = create_app(settings, clickhouse=clickhouse_db is not None)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return GatewayUnderTest(f"http://127.0.0.1:{port}", settings, app, widgets, patterns,
                                kafka_bootstrap)

    yield start
    for runner in runners:
        await runner.cleanup()
