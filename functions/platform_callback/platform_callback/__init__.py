"""Third-party platform (第三方平台) pushes: WeChat's message encryption and the
verification of the authorization-event URL's pushes (verify tickets, authorizations).

Pure code: the Lambda handler wires :func:`verify_push` to its storage.
"""

from platform_callback.push import (
    DEFAULT_MAX_SKEW,
    MAX_BODY_BYTES,
    REASONS,
    AuthorizationEvent,
    Authorized,
    ComponentConfig,
    ConfigLookup,
    InMemoryNonceStore,
    NonceStore,
    Push,
    PushRefused,
    Reason,
    Unauthorized,
    UpdateAuthorized,
    VerifyTicket,
    parse_push_xml,
    verify_push,
)
from platform_callback.wxcrypt import (
    BLOCK_SIZE,
    AppIdMismatch,
    BadCiphertext,
    BadEncodingAESKey,
    BadSignature,
    EncryptedMessage,
    MessageCrypt,
    WxCryptError,
    signature,
)

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_MAX_SKEW",
    "MAX_BODY_BYTES",
    "REASONS",
    "AppIdMismatch",
    "AuthorizationEvent",
    "Authorized",
    "BadCiphertext",
    "BadEncodingAESKey",
    "BadSignature",
    "ComponentConfig",
    "ConfigLookup",
    "EncryptedMessage",
    "InMemoryNonceStore",
    "MessageCrypt",
    "NonceStore",
    "Push",
    "PushRefused",
    "Reason",
    "Unauthorized",
    "UpdateAuthorized",
    "VerifyTicket",
    "WxCryptError",
    "parse_push_xml",
    "signature",
    "verify_push",
]
