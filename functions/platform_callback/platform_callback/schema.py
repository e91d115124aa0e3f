"""What the callback writes to the token table: key names, kinds and attribute names.

Copied from the layer's schema (``wechat_token.record``) rather than imported: this function
ships without the layer, so that its package holds nothing but what a push needs.
``tests/unit/test_platform_callback.py`` asserts that every constant here equals the
layer's, and the template's IAM policy (``dynamodb:Attributes``) lists exactly
:data:`WRITTEN_ATTRIBUTES`.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ATTR_COMPONENT_APPID",
    "ATTR_CREATE_TIME",
    "ATTR_EXPIRES_AT",
    "ATTR_FETCHED_AT",
    "ATTR_INFO_TYPE",
    "ATTR_PRIOR_EXPIRES_AT",
    "ATTR_PRIOR_VALUE",
    "ATTR_SOURCE",
    "ATTR_VALUE",
    "ATTR_VERSION",
    "COMPONENT_INDEX",
    "EVENT_PREFIX",
    "KIND_AUTHORIZATION",
    "KIND_COMPONENT_VERIFY_TICKET",
    "NONCE_ATTRIBUTES",
    "NONCE_PREFIX",
    "NONCE_RETENTION_SECONDS",
    "PENDING_PREFIX",
    "PK",
    "PUSH_SOURCE",
    "SK",
    "TICKET_LIFETIME_SECONDS",
    "TICKET_PREFIX",
    "TICKET_SAFETY_SECONDS",
    "TTL_ATTRIBUTE",
    "WRITTEN_ATTRIBUTES",
]

# Key attributes (wechat_token.record.PK / SK).
PK: Final = "app_id"
SK: Final = "kind"

# Record kinds (wechat_token.record.Kind): the verify ticket lives under
# "push-ticket#<component_appid>", an authorization event under
# "push-event#<component_appid>:<authorizer_appid>" (wechat_token.record's prefixes): the
# callback's role may write only there and under push-nonce# (dynamodb:LeadingKeys).
TICKET_PREFIX: Final = "push-ticket#"
EVENT_PREFIX: Final = "push-event#"
KIND_COMPONENT_VERIFY_TICKET: Final = "component_verify_ticket"
KIND_AUTHORIZATION: Final = "authorization"

# Push nonces (replay protection): app_id "push-nonce#<component_appid>", kind
# "<timestamp>:<nonce>", deleted by DynamoDB's TTL on expires_ttl.
NONCE_PREFIX: Final = "push-nonce#"
TTL_ATTRIBUTE: Final = "expires_ttl"
# Longer than verify_push's max_skew (300 s) on both sides of the clock: a replay is
# caught for as long as its timestamp would be accepted.
NONCE_RETENTION_SECONDS: Final = 900

# The sparse index the authorization events enter through their component_appid. An
# unprocessed event carries "pending#<component_appid>" there (the refresher queries that key
# and removes the attribute once it has acted on the event; an authorizer's token carries
# the plain component appid): token_refresher.platform.PENDING_PREFIX, docs/record.md.
COMPONENT_INDEX: Final = "component-index"
PENDING_PREFIX: Final = "pending#"

# CredentialRecord fields the callback sets.
ATTR_VALUE: Final = "value"
ATTR_EXPIRES_AT: Final = "expires_at"
ATTR_PRIOR_VALUE: Final = "prior_value"
ATTR_PRIOR_EXPIRES_AT: Final = "prior_expires_at"
ATTR_CREATE_TIME: Final = "create_time"
ATTR_FETCHED_AT: Final = "fetched_at"
ATTR_SOURCE: Final = "source"
ATTR_VERSION: Final = "version"
ATTR_INFO_TYPE: Final = "info_type"
ATTR_COMPONENT_APPID: Final = "component_appid"

# A ticket is valid 12 h after WeChat pushed it (docs/wechat-token-facts.md §8); it is
# stored as expiring 10 minutes earlier, like every conservative expiry of the table.
TICKET_LIFETIME_SECONDS: Final = 43_200
TICKET_SAFETY_SECONDS: Final = 600
PUSH_SOURCE: Final = "push"

NONCE_ATTRIBUTES: Final = frozenset({PK, SK, TTL_ATTRIBUTE})
# Every attribute any write of the callback names (keys included, as IAM's
# dynamodb:Attributes counts them).
WRITTEN_ATTRIBUTES: Final = frozenset(
    {
        PK,
        SK,
        ATTR_VALUE,
        ATTR_EXPIRES_AT,
        ATTR_PRIOR_VALUE,
        ATTR_PRIOR_EXPIRES_AT,
        ATTR_CREATE_TIME,
        ATTR_FETCHED_AT,
        ATTR_SOURCE,
        ATTR_VERSION,
        ATTR_INFO_TYPE,
        ATTR_COMPONENT_APPID,
        TTL_ATTRIBUTE,
    }
)
