"""Loopback benchmark harness: replay server, one process per contender, orchestrator."""
