"""Redaction of secrets and personal data: rules, settings, the Redactor and a dead-letter helper.

Pure and synchronous: the stream processor calls ``Redactor.redact_event`` per event; nothing
here knows about Kafka or Faust.
"""

from pipeline.redaction.config import ExtraPattern, RedactionSettings
from pipeline.redaction.engine import Redactor
from pipeline.redaction.raw import redact_raw
from pipeline.redaction.rules import RULE_NAMES, RULES, RuleInfo

__all__ = [
    "RULES",
    "RULE_NAMES",
    "ExtraPattern",
    "RedactionSettings",
    "Redactor",
    "RuleInfo",
    "redact_raw",
]
