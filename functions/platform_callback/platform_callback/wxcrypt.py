"""WeChat's message encryption (消息加解密, the scheme of its WXBizMsgCrypt samples).

- AESKey = Base64_Decode(EncodingAESKey + "="): 43 characters give 32 bytes;
- AES-256-CBC, IV = the key's first 16 bytes;
- plaintext = 16 random bytes + the message's length (4 bytes, big-endian) + the message
  + the AppId, PKCS#7-padded to a multiple of **32** bytes (WeChat's block size, not
  AES's 16: a pad byte is 1..32);
- ``Encrypt`` = Base64(ciphertext);
- ``msg_signature`` = SHA-1 hex of the sorted concatenation of (token, timestamp, nonce,
  Encrypt).

CBC without a MAC is malleable: only the signature proves that WeChat wrote a message,
so check it first (:meth:`MessageCrypt.decrypt_verified`). Every structural decryption
failure raises the same :class:`BadCiphertext` with the same message (no padding
oracle by error text). No error, repr or message here ever contains the key, the token
or any plaintext, and errors are raised outside ``except`` blocks so that neither
``__cause__`` nor ``__context__`` carries the failing data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "BLOCK_SIZE",
    "AppIdMismatch",
    "BadCiphertext",
    "BadEncodingAESKey",
    "BadSignature",
    "EncryptedMessage",
    "MessageCrypt",
    "WxCryptError",
    "is_signature_format",
    "pkcs7_pad",
    "pkcs7_unpad",
    "signature",
]

BLOCK_SIZE: Final = 32
_RANDOM_BYTES: Final = 16
_LENGTH_BYTES: Final = 4
_HEADER: Final = _RANDOM_BYTES + _LENGTH_BYTES
_ENCODING_AES_KEY: Final = re.compile(r"[A-Za-z0-9+/]{43}")
_SIGNATURE: Final = re.compile(r"[0-9a-f]{40}")


class WxCryptError(Exception):
    """Base of this module's errors; ``reason`` is a stable short code for logs and 4xx."""

    reason: str = "crypt_error"
    _message: str = "WeChat message encryption failed"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self._message)


class BadEncodingAESKey(WxCryptError, ValueError):
    """The configured EncodingAESKey is not 43 Base64 characters (32 bytes)."""

    reason = "bad_encoding_aes_key"
    _message = "the EncodingAESKey must be 43 Base64 characters decoding to 32 bytes"


class BadSignature(WxCryptError):
    """``msg_signature`` does not match (token, timestamp, nonce, Encrypt)."""

    reason = "bad_signature"
    _message = "the msg_signature does not match the message"


class BadCiphertext(WxCryptError):
    """``Encrypt`` is not Base64, not whole blocks, badly padded or badly framed."""

    reason = "bad_ciphertext"
    _message = "the Encrypt value does not decrypt to a WeChat message"


class AppIdMismatch(WxCryptError):
    """The message decrypted, but it was encrypted for another AppId."""

    reason = "app_id_mismatch"
    _message = "the message was encrypted for another AppId"


def signature(token: str, timestamp: str | int, nonce: str, encrypt: str) -> str:
    """WeChat's ``msg_signature``: SHA-1 hex of the sorted, concatenated four values."""
    parts = sorted((token, str(timestamp), nonce, encrypt))
    return hashlib.sha1("".join(parts).encode("utf-8"), usedforsecurity=False).hexdigest()


def pkcs7_pad(data: bytes, block_size: int = BLOCK_SIZE) -> bytes:
    """Pad ``data`` to a multiple of ``block_size`` (always adds 1..block_size bytes)."""
    if not 1 <= block_size <= 255:
        raise ValueError("block_size must be 1..255")
    count = block_size - len(data) % block_size
    return data + bytes([count]) * count


def pkcs7_unpad(data: bytes, block_size: int = BLOCK_SIZE) -> bytes:
    """Strip PKCS#7 padding; :class:`BadCiphertext` unless it is 1..block_size bytes of
    the pad value and ``data`` is whole blocks."""
    if not data or len(data) % block_size:
        raise BadCiphertext from None
    count = data[-1]
    if not 1 <= count <= block_size:
        raise BadCiphertext from None
    # Examine every pad byte, whatever the first mismatch, to keep the work uniform.
    mismatch = 0
    for byte in data[-count:]:
        mismatch |= byte ^ count
    if mismatch:
        raise BadCiphertext from None
    return data[:-count]


def _aes_key(encoding_aes_key: str) -> bytes:
    if not isinstance(encoding_aes_key, str):
        raise BadEncodingAESKey from None
    if not _ENCODING_AES_KEY.fullmatch(encoding_aes_key):
        # The length helps (a lost or an added "=" character); the value is never shown.
        raise BadEncodingAESKey(
            f"{BadEncodingAESKey._message}; got {len(encoding_aes_key)} characters "
            "(it must be exactly 43 of A-Z, a-z, 0-9, + and /, without a trailing '=')"
        ) from None
    key = base64.b64decode(encoding_aes_key + "=")
    if len(key) != 32:  # pragma: no cover - 43 Base64 characters always give 32 bytes
        raise BadEncodingAESKey from None
    return key


@dataclass(frozen=True, slots=True)
class EncryptedMessage:
    """One encrypted message as WeChat's passive reply carries it."""

    encrypt: str
    msg_signature: str
    timestamp: str
    nonce: str

    def to_xml(self) -> str:
        """The reply body WeChat expects (``<xml><Encrypt>…<Nonce>…</xml>``)."""
        return (
            f"<xml><Encrypt><![CDATA[{self.encrypt}]]></Encrypt>"
            f"<MsgSignature><![CDATA[{self.msg_signature}]]></MsgSignature>"
            f"<TimeStamp>{self.timestamp}</TimeStamp>"
            f"<Nonce><![CDATA[{self.nonce}]]></Nonce></xml>"
        )


class MessageCrypt:
    """Encrypt, decrypt, sign and verify messages for one (token, EncodingAESKey, AppId).

    For a third-party platform the AppId is the component appid. ``repr()`` shows
    only the AppId.
    """

    __slots__ = ("_app_id", "_app_id_bytes", "_key", "_token")

    def __init__(self, token: str, encoding_aes_key: str, app_id: str) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("the token must be a non-empty string")
        if not isinstance(app_id, str) or not app_id:
            raise ValueError("the AppId must be a non-empty string")
        self._key = _aes_key(encoding_aes_key)
        self._token = token
        self._app_id = app_id
        self._app_id_bytes = app_id.encode("utf-8")

    def __repr__(self) -> str:
        return f"MessageCrypt(app_id={self._app_id!r})"

    def __reduce__(self) -> str:
        # Pickling would copy the key into whatever stores the pickle.
        raise TypeError("MessageCrypt holds secrets and cannot be pickled")

    @property
    def app_id(self) -> str:
        """The AppId messages are encrypted for (a component appid for a platform)."""
        return self._app_id

    # ---------------------------------------------------------------- signatures

    def sign(self, timestamp: str | int, nonce: str, encrypt: str) -> str:
        """The ``msg_signature`` of one message."""
        return signature(self._token, timestamp, nonce, encrypt)

    def verify(self, msg_signature: str, timestamp: str | int, nonce: str, encrypt: str) -> None:
        """Raise :class:`BadSignature` unless ``msg_signature`` signs the message.

        The comparison is constant-time; hex case is ignored.
        """
        expected = self.sign(timestamp, nonce, encrypt).encode("ascii")
        given = msg_signature.lower().encode("utf-8", "replace") if msg_signature else b""
        if not hmac.compare_digest(expected, given):
            raise BadSignature from None

    # ---------------------------------------------------------------- encryption

    def encrypt_message(self, message: str | bytes, *, random_prefix: bytes | None = None) -> str:
        """``Encrypt`` (Base64) for ``message``. ``random_prefix`` (16 bytes) is for
        known-answer tests only; by default it comes from :mod:`secrets`."""
        body = message.encode("utf-8") if isinstance(message, str) else bytes(message)
        prefix = secrets.token_bytes(_RANDOM_BYTES) if random_prefix is None else random_prefix
        if len(prefix) != _RANDOM_BYTES:
            raise ValueError("random_prefix must be 16 bytes")
        plain = prefix + struct.pack(">I", len(body)) + body + self._app_id_bytes
        encryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).encryptor()
        sealed = encryptor.update(pkcs7_pad(plain)) + encryptor.finalize()
        return base64.b64encode(sealed).decode("ascii")

    def encrypt(
        self,
        xml: str | bytes,
        nonce: str | None = None,
        timestamp: str | int | None = None,
        *,
        random_prefix: bytes | None = None,
    ) -> EncryptedMessage:
        """Encrypt and sign a message (a reply to WeChat); nonce and timestamp default
        to a random number and the current time."""
        nonce = str(secrets.randbelow(9 * 10**9) + 10**9) if nonce is None else nonce
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        encrypted = self.encrypt_message(xml, random_prefix=random_prefix)
        return EncryptedMessage(encrypted, self.sign(stamp, nonce, encrypted), stamp, nonce)

    # ---------------------------------------------------------------- decryption

    def decrypt(self, encrypt_b64: str, *, check_app_id: bool = True) -> tuple[str, str]:
        """``(message, app_id)`` from an ``Encrypt`` value.

        Raises :class:`BadCiphertext` for anything that is not a well-formed message
        and, unless ``check_app_id`` is False, :class:`AppIdMismatch` when it was
        encrypted for another AppId. This does not check the signature: see
        :meth:`decrypt_verified`.
        """
        sealed = _b64decode(encrypt_b64)
        if sealed is None or not sealed or len(sealed) % BLOCK_SIZE:
            raise BadCiphertext from None
        decryptor = Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16])).decryptor()
        plain = pkcs7_unpad(decryptor.update(sealed) + decryptor.finalize())
        if len(plain) < _HEADER:
            raise BadCiphertext from None
        (length,) = struct.unpack(">I", plain[_RANDOM_BYTES:_HEADER])
        if _HEADER + length > len(plain):
            raise BadCiphertext from None
        message = _utf8(plain[_HEADER : _HEADER + length])
        app_id = _utf8(plain[_HEADER + length :])
        if message is None or app_id is None:
            raise BadCiphertext from None
        if check_app_id and not hmac.compare_digest(app_id.encode("utf-8"), self._app_id_bytes):
            raise AppIdMismatch from None
        return message, app_id

    def decrypt_verified(
        self, msg_signature: str, timestamp: str | int, nonce: str, encrypt_b64: str
    ) -> str:
        """Verify the signature, then decrypt: the message (for this AppId only)."""
        self.verify(msg_signature, timestamp, nonce, encrypt_b64)
        return self.decrypt(encrypt_b64)[0]


def _b64decode(value: str) -> bytes | None:
    """Strict Base64 (alphabet and padding), or None; never raises."""
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        return None


def _utf8(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def is_signature_format(value: str) -> bool:
    """Whether ``value`` looks like a ``msg_signature`` (40 hex digits, any case)."""
    return bool(_SIGNATURE.fullmatch(value.lower()))
