"""A stand-in for confluent_kafka.Message: the fakes of the loops' tests hand these out."""

from __future__ import annotations

from confluent_kafka import KafkaError


class Msg:
    def __init__(self, topic: str, partition: int, offset: int = 0, value: bytes | None = None,
                 key: bytes | None = None, error: KafkaError | None = None) -> None:
        self._t, self._p, self._o, self._v, self._k, self._e = topic, partition, offset, value, key, error

    def error(self) -> KafkaError | None:
        return self._e

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes | None:
        return self._k
