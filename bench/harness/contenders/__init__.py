"""One module per contender; each runs in its own process (see _common.py)."""
