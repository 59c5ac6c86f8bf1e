"""Failure-pattern detection: pure detectors (detectors.py) and their Faust shell."""
