"""Pydantic models of the Core API wire format (core-api.md §C), used for validation and OpenAPI."""
