"""API-key scopes (decision 9): ``<dotted resource path>:<read|write|manage>`` with ``*`` segments.

A granted pattern covers a required scope when every resource segment matches (``*`` matches any
one segment, and a trailing ``*`` matches one or more remaining segments) and the granted level is
at least the required one (``manage`` ⊇ ``write`` ⊇ ``read``). The bare ``*`` grants everything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

LEVELS = {"read": 1, "write": 2, "manage": 3}
_SEGMENT = r"(?:\*|[a-z][a-z0-9_]*)"
SCOPE_PATTERN = re.compile(rf"^(?:\*|{_SEGMENT}(?:\.{_SEGMENT})*:(?:read|write|manage|\*))$")


def is_valid(scope: str) -> bool:
    return bool(SCOPE_PATTERN.match(scope))


def _resource_matches(granted: list[str], required: list[str]) -> bool:
    for index, segment in enumerate(granted):
        if index >= len(required):
            return False
        if segment == "*" and index == len(granted) - 1:
            return True
        if segment not in ("*", required[index]):
            return False
    return len(granted) == len(required)


def grants(granted_scopes: Iterable[str], required: str) -> bool:
    required_resource, required_level = required.split(":")
    required_parts = required_resource.split(".")
    for scope in granted_scopes:
        if scope == "*":
            return True
        if ":" not in scope:
            continue
        resource, level = scope.rsplit(":", 1)
        if level != "*" and LEVELS.get(level, 0) < LEVELS[required_level]:
            continue
        if _resource_matches(resource.split("."), required_parts):
            return True
    return False


def covers(granted_scopes: Iterable[str], requested: str) -> bool:
    """Whether ``granted_scopes`` include everything the (possibly wildcard) ``requested`` scope grants,
    so a key can never hand out more than it holds."""
    granted = list(granted_scopes)
    if "*" in granted:
        return True
    if requested == "*" or ":" not in requested:
        return False
    resource, level = requested.rsplit(":", 1)
    for scope in granted:
        if ":" not in scope:
            continue
        granted_resource, granted_level = scope.rsplit(":", 1)
        if granted_level != "*" and (level == "*" or LEVELS.get(granted_level, 0) < LEVELS[level]):
            continue
        # A wildcard segment in the request is covered only by a wildcard in the grant.
        if _resource_matches(granted_resource.split("."), resource.split(".")):
            return True
    return False
