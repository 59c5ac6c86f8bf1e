"""Private Kafka brokers a scenario may stop or kill without touching the shared stack on 9092.

Built with the local stack's own `KafkaStack` (same templates, same jars, symlinked), in a
temporary stack dir and on fixed ports outside the ephemeral range, so a stopped broker can come
back on the port its clients know.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

from pipeline.settings import StackSettings
from pipeline.stack.kafka import KafkaNode, KafkaStack


def private_kafka(stack_dir: Path, ports: tuple[int, int, int], brokers: int,
                  controller_port: int | None = None) -> KafkaStack:
    """A not yet started KafkaStack of ``brokers`` nodes under ``stack_dir``; a single node
    listens on ``ports[0]`` (controller on ``controller_port``), a cluster on all three (+1)."""
    shared = StackSettings()
    extra: dict[str, object] = {}
    if controller_port is not None:
        extra["kafka_controller_port"] = controller_port
    stack = StackSettings(dir=stack_dir, brokers=brokers, cluster_ports=ports,
                          kafka_version=shared.kafka_version, **extra)
    kafka = KafkaStack(stack)
    source = KafkaStack(shared).libs
    assert (source / ".complete").is_file(), f"the local stack's Kafka jars are missing: {source}"
    kafka.libs.parent.mkdir(parents=True, exist_ok=True)
    if not kafka.libs.exists():
        kafka.libs.symlink_to(source, target_is_directory=True)
    return kafka


def kill_node(kafka: KafkaStack, node: KafkaNode) -> int:
    """SIGKILL one broker (its whole process group): a crash, no controlled shutdown."""
    proc = kafka.process(node)
    pid = proc.pid()
    assert pid is not None, f"kafka node {node.node_id} is not running"
    os.killpg(pid, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(pid)], timeout=30)
    return pid


def stop_node(kafka: KafkaStack, node: KafkaNode) -> None:
    """SIGTERM one broker and wait for it to exit (a controlled shutdown)."""
    assert kafka.process(node).stop(timeout_s=60), f"kafka node {node.node_id} was not running"


def start_node(kafka: KafkaStack, node: KafkaNode, timeout_s: float = 90.0) -> None:
    """Start a stopped node again on its old port and data dir; wait until all nodes answer."""
    started = kafka.start()
    assert started == [kafka.process(node).name], started
    kafka.wait_ready(timeout_s)
