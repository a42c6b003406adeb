"""AuthPI as the client of another identity provider (decision 32 for its outbound requests).

Shared by every sign-in method that sends the user elsewhere (OpenID Connect, OAuth 2.0 presets,
GitHub, Apple, manual OAuth 2.0) and by anything else that federates with an upstream OIDC provider
(an organization's SSO connection): ``http`` (the guarded client with size limits), ``discovery``
(cached provider metadata), ``id_tokens`` (JWKS cache and ID-token checks), ``provider`` (what a
method tells the machinery), ``pending`` (the upstream requests in flight) and ``routes`` (the
start button and the callback).
"""
