"""One module per resource; importing this package registers every table on ``Base.metadata``."""

from authpi.storage.tables import (  # noqa: F401
    accounts,
    api_keys,
    auth_methods,
    cache_invalidations,
    clients,
    events,
    idempotency,
    issuers,
    leases,
    lockouts,
    messages,
    notes,
    oauth,
    one_time_codes,
    organizations,
    passkey_challenges,
    sessions,
    signing_keys,
    system,
    upstream,
    users,
    verifiers,
    webhooks,
)
from authpi.storage.tables.base import Base

__all__ = ["Base"]
