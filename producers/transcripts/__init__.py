"""Transcript importer: backfills sessions from Claude Code's JSONL transcripts.

``discover`` finds transcript files, ``lines`` reads them line by line, ``mapper`` turns lines
into TelemetryEvents (pure, deterministic ids), ``importer`` publishes them, ``command`` is
``agentwatch import``.
"""
