"""Load and scenario simulator: realistic multi-agent Claude Code sessions, sent like the real ones.

``spec`` names the scenario knobs and presets, ``session`` builds one session's hook payloads and
OTLP usage records (pure and seeded: the same seed gives the same bytes), ``script`` holds the
steps and their ground truth, ``driver`` POSTs them to the collector at a rate, ``command`` is
``agentwatch simulate``.
"""
