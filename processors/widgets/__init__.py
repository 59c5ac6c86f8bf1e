"""Live widget state per session: pure reducers (reducers.py), the processor over a state store,
and its shells (processors/aggregates_loop.py; the Faust agent in agent.py)."""
