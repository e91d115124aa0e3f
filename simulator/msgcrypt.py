"""WeChat's message encryption as WeChat's side does it, for the simulated pushes.

Written apart from ``functions/platform_callback`` on purpose: the simulator plays
WeChat, so a mistake shared by both would go unnoticed. The scheme (WeChat's
WXBizMsgCrypt samples): key = Base64(EncodingAESKey + "="), AES-256-CBC with the key's
first 16 bytes as IV, plaintext = 16 random bytes | uint32 big-endian length | message
| appid, PKCS#7 padding to 32-byte blocks; ``Encrypt`` = Base64(ciphertext);
``msg_signature`` = SHA-1 of the sorted (token, timestamp, nonce, Encrypt).
"""

from __future__ import annotations

import base64
import hashlib
import re

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["PushKey", "msg_signature"]

_KEY_FORMAT = re.compile(r"[0-9A-Za-z+/]{43}")
_WECHAT_BLOCK = 32


def msg_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """SHA-1 hex over the four values sorted as strings, then joined."""
    digest = hashlib.sha1()
    for part in sorted([token, timestamp, nonce, encrypt]):
        digest.update(part.encode())
    return digest.hexdigest()


class PushKey:
    """A platform's message Token and AES key, as WeChat holds them to sign and
    encrypt pushes. ``repr()`` hides both."""

    __slots__ = ("_aes", "_token")

    def __init__(self, token: str, encoding_aes_key: str) -> None:
        if not token:
            raise ValueError("a platform needs a message token")
        if not _KEY_FORMAT.fullmatch(encoding_aes_key or ""):
            raise ValueError("an EncodingAESKey is 43 characters of A-Z, a-z, 0-9, + and /")
        self._aes = base64.b64decode(encoding_aes_key + "=")
        self._token = token

    def __repr__(self) -> str:
        return "PushKey(<hidden>)"

    def seal(self, appid: str, message: str, random16: bytes) -> str:
        """``Encrypt`` for ``message`` addressed to ``appid``."""
        if len(random16) != 16:
            raise ValueError("random16 must be 16 bytes")
        text = message.encode()
        framed = b"".join((random16, len(text).to_bytes(4, "big"), text, appid.encode()))
        fill = _WECHAT_BLOCK - len(framed) % _WECHAT_BLOCK
        framed += fill.to_bytes(1, "big") * fill
        aes = Cipher(algorithms.AES256(self._aes), modes.CBC(self._aes[:16])).encryptor()
        return base64.b64encode(aes.update(framed) + aes.finalize()).decode()

    def sign(self, timestamp: str, nonce: str, encrypt: str) -> str:
        """The push's ``msg_signature``."""
        return msg_signature(self._token, timestamp, nonce, encrypt)

    def plain_sign(self, timestamp: str, nonce: str) -> str:
        """The plain-mode ``signature`` WeChat sends beside it: SHA-1 of the sorted
        (token, timestamp, nonce)."""
        digest = hashlib.sha1()
        for part in sorted([self._token, timestamp, nonce]):
            digest.update(part.encode())
        return digest.hexdigest()
