"""HTTP layer: routing, envelopes, authentication, errors. Protocol (OIDC) routes live in authpi.oidc."""
