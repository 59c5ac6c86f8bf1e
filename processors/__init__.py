"""The Faust stream-processing app: validate/redact, widget state, failure patterns."""
