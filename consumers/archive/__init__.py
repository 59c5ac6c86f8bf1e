"""The archive sink and session replay: every session kept as one gzip JSONL recording.

``targets`` stores objects (a folder or S3), ``jsonl`` renders events as lines, ``layout`` names
the keys, ``segments`` and ``compaction`` turn a stream of events into recordings, ``recordings``
reads them back, ``replay`` re-emits a recording with its original timing, ``sink`` is the
long-running Kafka consumer. docs/archive.md describes the formats.
"""
