"""Logs, request IDs and metrics: what an operator sees of a running server."""
