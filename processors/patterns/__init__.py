"""Failure-pattern detection: pure detectors (detectors.py), the processor over a state store, and
its shells (processors/aggregates_loop.py; the Faust agent in agent.py)."""
