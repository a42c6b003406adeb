"""The event types of §C.16: the exact names events carry and webhooks subscribe to (no wildcards),
and the few types that are only written to the event log."""

from __future__ import annotations

CATALOGUE: tuple[str, ...] = (
    # `session` (6)
    "session.created",
    "session.updated",
    "session.expired",
    "session.terminated",
    "session.compromised",
    "session.token-refreshed",
    # `machine` (1)
    "machine.token.issued",
    # `user` (36)
    "user.created",
    "user.updated",
    "user.deleted",
    "user.blocked",
    "user.unblocked",
    "user.verification.succeeded",
    "user.verification.failed",
    "user.password.changed",
    "user.password.reset-requested",
    "user.password.reset",
    "user.login-link.requested",
    "user.login-link.consumed",
    "user.verifier.created",
    "user.verifier.updated",
    "user.verifier.deleted",
    "user.email.change-requested",
    "user.email.changed",
    "user.email.verified",
    "user.approval.requested",
    "user.approval.approved",
    "user.approval.rejected",
    "user.mfa.factor-created",
    "user.mfa.factor-deleted",
    "user.mfa.backup-codes.regenerated",
    "user.mfa.backup-codes.low",
    "user.mfa.verification.succeeded",
    "user.mfa.verification.failed",
    "user.device.trusted",
    "user.device.revoked",
    "user.consent.granted",
    "user.consent.revoked",
    "user.sso.provisioned",
    "user.sso.linked",
    "user.personal-token.created",
    "user.personal-token.updated",
    "user.personal-token.deleted",
    # `client` (6)
    "client.created",
    "client.updated",
    "client.deleted",
    "client.secret.rotated",
    "client.blocked",
    "client.unblocked",
    # `api-key` (5)
    "api-key.created",
    "api-key.updated",
    "api-key.deleted",
    "api-key.blocked",
    "api-key.unblocked",
    # `issuer` (6)
    "issuer.created",
    "issuer.updated",
    "issuer.deleted",
    "issuer.auth-method.created",
    "issuer.auth-method.updated",
    "issuer.auth-method.deleted",
    # `organization` (21)
    "organization.created",
    "organization.updated",
    "organization.deleted",
    "organization.suspended",
    "organization.reactivated",
    "organization.membership.created",
    "organization.membership.updated",
    "organization.membership.deleted",
    "organization.group.created",
    "organization.group.updated",
    "organization.group.deleted",
    "organization.invitation.created",
    "organization.invitation.accepted",
    "organization.invitation.declined",
    "organization.invitation.deleted",
    "organization.sso.enabled",
    "organization.sso.disabled",
    "organization.sso.updated",
    "organization.sso.domain-created",
    "organization.sso.domain-verified",
    "organization.sso.domain-deleted",
    # `agent` (5)
    "agent.created",
    "agent.updated",
    "agent.deleted",
    "agent.verifier.added",
    "agent.verifier.removed",
    # `account` (9)
    "account.created",
    "account.updated",
    "account.deleted",
    "account.domain.assigned",
    "account.domain.unassigned",
    "account.domain.added",
    "account.domain.removed",
    "account.credits.depleted",
    "account.credits.updated",
    # `webhook` (5)
    "webhook.created",
    "webhook.updated",
    "webhook.deleted",
    "webhook.paused",
    "webhook.resumed",
    # `email` (2)
    "email.sent",
    "email.failed",
    # `auth` (4)
    "auth.flow.rate-limited",
    "auth.flow.expired",
    "auth.flow.replay-attempt",
    "auth.flow.device-mismatch",
)
# The webhook catalogue: what a webhook may subscribe to and what gets delivered.
EVENT_TYPES: frozenset[str] = frozenset(CATALOGUE)

# Recorded in the account's event log but never delivered to webhooks (and not subscribable):
# notes are the account's own annotations, not changes to identity data (issue 9, item 6); an SMS
# sent or given up on has no catalogue type (only email has: email.sent, email.failed).
LOG_ONLY: tuple[str, ...] = (
    "note.created",
    "note.updated",
    "note.deleted",
    "sms.sent",
    "sms.failed",
)
LOG_ONLY_EVENT_TYPES: frozenset[str] = frozenset(LOG_ONLY)

# Every type an event in the log may carry.
LOGGED_EVENT_TYPES: frozenset[str] = EVENT_TYPES | LOG_ONLY_EVENT_TYPES


def deliverable(event_type: str) -> bool:
    """Whether events of this type go to webhooks (log-only types never do)."""
    return event_type in EVENT_TYPES
