"""The OpenID Connect provider (IdP API under /{issuer_id}): protocol code kept apart from the
Core API. JOSE in ``keys``/``tokens``, OAuth rules in ``flows``, HTTP in ``routes``."""
