"""Authorizers' refresh tokens, encrypted with KMS so that only the refresher can read them.

A refresh token is the one credential of a third-party platform that cannot be fetched
again with a secret: it is stored, in the same fenced write as the access token it came
with, as a KMS ciphertext (``Encrypt`` with the stack's key, the record's app_id as the
encryption context, so a ciphertext copied onto another record does not decrypt). A
principal that can read the table but lacks ``kms:Decrypt`` on the key, every consumer,
sees only ciphertext. Direct KMS calls rather than the AWS Encryption SDK: a refresh token
is far below KMS's 4 KB plaintext limit, so envelope encryption would add a data key and
a dependency for nothing.
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from .errors import NoTokenError, StoreError

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

CONTEXT_KEY = "app_id"


class RefreshTokenCipher(Protocol):
    """Encrypts and decrypts one authorizer's refresh token, bound to its app_id."""

    def encrypt(self, app_id: str, refresh_token: str) -> str: ...

    def decrypt(self, app_id: str, ciphertext: str) -> str: ...


class KmsRefreshTokenCipher:
    """KMS ``Encrypt``/``Decrypt`` with the app_id as encryption context (base64 text)."""

    def __init__(self, client: KMSClient | Any, key_id: str) -> None:
        self._client = client
        self._key_id = key_id

    def __repr__(self) -> str:
        return f"KmsRefreshTokenCipher(key_id={self._key_id!r})"

    def encrypt(self, app_id: str, refresh_token: str) -> str:
        try:
            answer = self._client.encrypt(
                KeyId=self._key_id,
                Plaintext=refresh_token.encode(),
                EncryptionContext={CONTEXT_KEY: app_id},
            )
        except (BotoCoreError, ClientError) as exc:
            failure = _describe(exc)
        else:
            return base64.b64encode(answer["CiphertextBlob"]).decode()
        raise StoreError(
            f"KMS could not encrypt the refresh token of {app_id!r} ({failure}); nothing was "
            "stored. The refresher needs kms:Encrypt on REFRESH_TOKEN_KMS_KEY_ID."
        )

    def decrypt(self, app_id: str, ciphertext: str) -> str:
        try:
            blob = base64.b64decode(ciphertext, validate=True)
        except (binascii.Error, ValueError):
            blob = b""
        if not blob:
            raise NoTokenError(
                f"The stored refresh token of {app_id!r} is not a KMS ciphertext; "
                "reconciliation (api_get_authorizer_list) restores it"
            )
        try:
            answer = self._client.decrypt(
                KeyId=self._key_id, CiphertextBlob=blob, EncryptionContext={CONTEXT_KEY: app_id}
            )
        except (BotoCoreError, ClientError) as exc:
            failure = _describe(exc)
        else:
            return bytes(answer["Plaintext"]).decode()
        raise StoreError(
            f"KMS could not decrypt the refresh token of {app_id!r} ({failure}). The "
            "refresher needs kms:Decrypt on REFRESH_TOKEN_KMS_KEY_ID; a ciphertext of another "
            "record or key is refused."
        )


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__
