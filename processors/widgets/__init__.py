"""Live widget state per session: pure reducers (reducers.py) and their Faust shell."""
