"""The account portal (decision 21): ``/{issuer_id}/account``, where a signed-in user manages their
own account. One module per section (``profile``, ``password``, ``sessions``, ``consents``,
``factors``, ``passkeys``, ``devices``), ``access`` for what every page starts with (the browser
session, CSRF, recent sign-in), ``client`` for how the portal signs its user in; the rules live in
the services (``services/account.py`` and the ones each section reuses)."""
