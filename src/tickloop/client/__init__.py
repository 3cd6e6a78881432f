"""The only I/O to venues: one WebSocket session, one HTTP session, and their policies."""
