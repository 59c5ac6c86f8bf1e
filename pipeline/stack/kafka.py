"""Apache Kafka (KRaft) for the local stack: jars from Maven Central, formatted storage, 1 or 3 nodes."""

from __future__ import annotations

import base64
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from pipeline.errors import PrerequisiteError
from pipeline.settings import REPO_ROOT, StackSettings
from pipeline.stack.process import ManagedProcess, port_open, wait_for

TEMPLATE_DIR = REPO_ROOT / "deploy" / "local" / "kafka"
LOG4J = """log4j.rootLogger=INFO, stdout
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
"""


def new_cluster_id() -> str:
    """A Kafka cluster id (base64url of a UUID) that the storage tool cannot mistake for an
    option: ids starting with '-' are read as flags and formatting fails."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    port: int
    controller_port: int


class KafkaStack:
    """Installs, formats, starts and stops the local broker(s)."""

    def __init__(self, stack: StackSettings) -> None:
        self.stack = stack
        self.root = stack.dir / "kafka"
        self.libs = self.root / f"libs-{stack.kafka_version}"

    # -- install -------------------------------------------------------------------------
    def installed(self) -> bool:
        return (self.libs / ".complete").is_file()

    def install(self) -> bool:
        """Resolve the broker jars with Maven once; later calls reuse them. True if it downloaded."""
        if self.installed():
            return False
        for tool in ("java", "mvn"):
            if shutil.which(tool) is None:
                raise PrerequisiteError(
                    f"`{tool}` is not on PATH: the local Kafka needs Java 17+ and Maven "
                    "(Debian: apt-get install openjdk-17-jre-headless maven)"
                )
        self.libs.mkdir(parents=True, exist_ok=True)
        cmd = [
            "mvn", "-q", "-B", "-f", str(TEMPLATE_DIR / "pom.xml"),
            f"-Dkafka.version={self.stack.kafka_version}",
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={self.libs}",
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PrerequisiteError(
                "could not fetch the Kafka jars from Maven Central:\n"
                + (result.stdout + result.stderr)[-2000:]
            )
        (self.libs / ".complete").write_text(self.stack.kafka_version + "\n")
        return True

    # -- layout --------------------------------------------------------------------------
    def nodes(self) -> list[KafkaNode]:
        if self.stack.brokers == 1:
            port = self.stack.cluster_ports[0]
            return [KafkaNode(1, port, self.stack.kafka_controller_port)]
        return [KafkaNode(i + 1, p, p + 1) for i, p in enumerate(self.stack.cluster_ports)]

    def bootstrap_servers(self) -> str:
        return ",".join(f"127.0.0.1:{n.port}" for n in self.nodes())

    def _mode_dir(self) -> Path:
        # Single-node and cluster data live apart: their storage is formatted differently.
        return self.root / ("single" if self.stack.brokers == 1 else "cluster")

    def _node_dir(self, node: KafkaNode) -> Path:
        return self._mode_dir() / f"node-{node.node_id}"

    def process(self, node: KafkaNode) -> ManagedProcess:
        return ManagedProcess(f"kafka-{node.node_id}", self.stack.dir / "run", self.stack.dir / "logs")

    def processes(self) -> list[ManagedProcess]:
        # Both layouts' processes, so `down` stops whatever a previous `up` started.
        names = {"kafka-1", "kafka-2", "kafka-3"}
        return [ManagedProcess(n, self.stack.dir / "run", self.stack.dir / "logs") for n in sorted(names)]

    def _render(self, node: KafkaNode) -> Path:
        nodes = self.nodes()
        if len(nodes) == 1:
            quorum = f"controller.quorum.bootstrap.servers=127.0.0.1:{node.controller_port}"
            rf, min_isr = 1, 1
        else:
            voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
            quorum = f"controller.quorum.voters={voters}"
            rf, min_isr = 3, 2
        node_dir = self._node_dir(node)
        node_dir.mkdir(parents=True, exist_ok=True)
        text = Template((TEMPLATE_DIR / "server.properties.tmpl").read_text()).substitute(
            node_id=node.node_id,
            quorum_line=quorum,
            port=node.port,
            controller_port=node.controller_port,
            log_dir=node_dir / "data",
            rf=rf,
            min_isr=min_isr,
        )
        props = node_dir / "server.properties"
        props.write_text(text)
        (node_dir / "log4j.properties").write_text(LOG4J)
        return props

    def _java(self, node: KafkaNode, main: str, *args: str) -> list[str]:
        return [
            "java", f"-Xmx{self.stack.kafka_heap}", f"-Xms{self.stack.kafka_heap}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self._node_dir(node) / 'log4j.properties'}",
            "-cp", f"{self.libs}/*", main, *args,
        ]

    def _format(self, node: KafkaNode, props: Path) -> None:
        if (self._node_dir(node) / "data" / "meta.properties").is_file():
            return
        cluster_file = self._mode_dir() / "cluster-id"
        if not cluster_file.is_file():
            cluster_file.parent.mkdir(parents=True, exist_ok=True)
            cluster_file.write_text(new_cluster_id())
        cluster_id = cluster_file.read_text().strip()
        # --standalone for the dynamic single-node quorum; static voters take no quorum flag
        # (mixing the two fails, KAFKA-18987).
        extra = ["--standalone"] if self.stack.brokers == 1 else []
        cmd = self._java(node, "kafka.tools.StorageTool", "format", "--cluster-id", cluster_id,
                         "--config", str(props), *extra)
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise PrerequisiteError(f"formatting Kafka storage failed:\n{result.stderr[-2000:]}")

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> list[str]:
        """Start every node not yet running; returns the names started."""
        started: list[str] = []
        for node in self.nodes():
            proc = self.process(node)
            if proc.is_running():
                continue
            if port_open("127.0.0.1", node.port) or port_open("127.0.0.1", node.controller_port):
                raise PrerequisiteError(
                    f"port {node.port} or {node.controller_port} is taken by another program; "
                    "set AGENTWATCH_STACK__CLUSTER_PORTS / AGENTWATCH_STACK__KAFKA_CONTROLLER_PORT"
                )
            props = self._render(node)
            self._format(node, props)
            proc.start(self._java(node, "kafka.Kafka", str(props)), cwd=self._node_dir(node))
            started.append(proc.name)
        return started

    def wait_ready(self, timeout_s: float) -> None:
        for node in self.nodes():
            proc = self.process(node)
            if not wait_for(lambda n=node: port_open("127.0.0.1", n.port), timeout_s):
                raise PrerequisiteError(
                    f"Kafka node {node.node_id} did not open port {node.port} within {timeout_s:.0f}s; "
                    f"last log lines:\n{proc.log_tail()}"
                )
        if not wait_for(self.healthy, timeout_s):
            raise PrerequisiteError("Kafka is listening but does not answer metadata requests")

    def healthy(self) -> bool:
        """True when every node answers a metadata request."""
        from confluent_kafka.admin import AdminClient

        from pipeline.stack.lag import QUIET

        if not any(port_open("127.0.0.1", n.port) for n in self.nodes()):
            return False
        try:
            # librdkafka would print every refused connection to stderr; status says "down".
            conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers(), "logger": QUIET}
            admin = AdminClient(conf)
            meta = admin.list_topics(timeout=3)
        except Exception:
            return False
        return len(meta.brokers) == len(self.nodes())

    def stop(self) -> list[str]:
        return [p.name for p in self.processes() if p.stop(timeout_s=30)]
