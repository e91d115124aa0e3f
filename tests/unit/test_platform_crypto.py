"""WeChat's message encryption (platform_callback.wxcrypt) against WeChat's published
vectors, and its failure modes."""

from __future__ import annotations

import base64
import pickle
import struct
import time
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml.ElementTree import fromstring
from hypothesis import given, settings
from hypothesis import strategies as st
from platform_callback.wxcrypt import (
    BLOCK_SIZE,
    AppIdMismatch,
    BadCiphertext,
    BadEncodingAESKey,
    BadSignature,
    EncryptedMessage,
    MessageCrypt,
    WxCryptError,
    pkcs7_pad,
    pkcs7_unpad,
    signature,
)

# The EncodingAESKey of WeChat's own samples.
SAMPLE_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"

# --- WxJava's WxCryptUtilTest (a fixed random prefix, so the ciphertext is exact).
WXJAVA_TOKEN = "pamtest"
WXJAVA_APPID = "wxb11529c136998cb6"
WXJAVA_RANDOM = b"aaaabbbbccccdddd"
WXJAVA_MSG = "我是中文abcd123"
WXJAVA_ENCRYPT = (
    "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
)
WXJAVA_MSG2 = (
    "<xml><ToUserName><![CDATA[oia2Tj我是中文jewbmiOUlr6X-1crbLOvLw]]></ToUserName>"
    "<FromUserName><![CDATA[gh_7f083739789a]]></FromUserName><CreateTime>1407743423"
    "</CreateTime><MsgType><![CDATA[video]]></MsgType><Video><MediaId><![CDATA[eYJ1MbwPRJtO"
    "vIEabaxHs7TX2D-HV71s79GUxqdUkjm6Gs2Ed1KF3ulAOA9H1xG0]]></MediaId><Title><![CDATA["
    "testCallBackReplyVideo]]></Title><Description><![CDATA[testCallBackReplyVideo]]>"
    "</Description></Video></xml>"
)
WXJAVA_ENCRYPT2 = (
    "jn1L23DB+6ELqJ+6bruv23M2GmYfkv0xBh2h+XTBOKVKcgDFHle6gqcZ1cZrk3e1qjPQ1F4RsLWzQRG9udbKWesxl"
    "kupqcEcW7ZQweImX9+wLMa0GaUzpkycA8+IamDBxn5loLgZpnS7fVAbExOkK5DYHBmv5tptA9tklE/fTIILHR8HLX"
    "a5nQvFb3tYPKAlHF3rtTeayNf0QuM+UW/wM9enGIDIJHF7CLHiDNAYxr+r+OrJCmPQyTy8cVWlu9iSvOHPT/77bZqJ"
    "ucQHQ04sq7KZI27OcqpQNSto2OdHCoTccjggX5Z9Mma0nMJBU+jLKJ38YB1fBIz+vBzsYjrTmFQ44YfeEuZ+xRTQw"
    "r92vhA9OxchWVINGC50qE/6lmkwWTwGX9wtQpsJKhP+oS7rvTY8+VdzETdfakjkwQ5/Xka042OlUb1/slTwo4Rscu"
    "Q+RdxSGvDahxAJ6+EAjLt9d8igHngxIbf6YyqqROxuxqIeIch3CssH/LqRs+iAcILvApYZckqmA7FNERspKA5f8Go"
    "J9sv8xmGvZ9Yrf57cExWtnX8aCMMaBropU/1k+hKP5LVdzbWCG0hGwx/dQudYR/eXp3P0XxjlFiy+9DMlaFExWUZQD"
    "ajPkdPrEeOwofJb"
)

# --- Tencent's official Python sample (Sample.py of WXBizMsgCrypt, 公众平台).
TENCENT_TOKEN = "spamtest"
TENCENT_APPID = "wx2c2769f8efd9abc2"
TENCENT_TIMESTAMP = "1409735669"
TENCENT_NONCE = "1320562132"
TENCENT_SIGNATURE = "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
TENCENT_ENCRYPT = (
    "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8P"
    "GHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa"
    "+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X"
    "8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9F"
    "yJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
)
TENCENT_PLAIN = (
    "<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName>\n"
    "<FromUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></FromUserName>\n"
    "<CreateTime>1409735668</CreateTime>\n"
    "<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[abcdteT]]></Content>\n"
    "<MsgId>6054768590064713728</MsgId>\n"
    "</xml>"
)

# --- Tencent's official C# sample (Sample.cs): another key, and a 30-byte pad.
CSHARP_TOKEN = "QDG6eK"
CSHARP_APPID = "wx5823bf96d3bd56c7"
CSHARP_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CSHARP_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
CSHARP_TIMESTAMP = "1409659813"
CSHARP_NONCE = "1372623149"
CSHARP_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczcd"
    "CUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd4X"
    "gpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2r+Kq"
    "CKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4XXZ"
    "S9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIGHBZ"
    "ZIs2pDBS8R07+qN+E7Q=="
)

TOKEN = "tok3n-For-Tests"
KEY = "Zm9yIHRlc3RzIG9ubHk6IG5vdCBhIHJlYWwga2V5IQ0"
APPID = "wx0000000000platform"


@pytest.fixture
def crypt() -> MessageCrypt:
    return MessageCrypt(TOKEN, KEY, APPID)


def _raw_key(encoding_aes_key: str) -> bytes:
    return base64.b64decode(encoding_aes_key + "=")


def _seal_raw(encoding_aes_key: str, plain: bytes) -> str:
    """AES-CBC over already-padded ``plain`` (to build malformed messages)."""
    key = _raw_key(encoding_aes_key)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def _open_raw(encoding_aes_key: str, encrypt: str) -> bytes:
    key = _raw_key(encoding_aes_key)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    return decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()


# ------------------------------------------------------------ known answers


def test_known_answer_wxjava_encryption_is_exact() -> None:
    """WxJava's vectors: binarywang's WxJava (originally chanjarster/weixin-java-tools),
    weixin-java-common/src/test/java/me/chanjar/weixin/common/util/crypto/
    WxCryptUtilTest.java (testAesEncrypt, testAesEncrypt2): with the 16 "random" bytes
    fixed to "aaaabbbbccccdddd", the ciphertext of each message is published."""
    crypt = MessageCrypt(WXJAVA_TOKEN, SAMPLE_KEY, WXJAVA_APPID)
    assert crypt.encrypt_message(WXJAVA_MSG, random_prefix=WXJAVA_RANDOM) == WXJAVA_ENCRYPT
    assert crypt.encrypt_message(WXJAVA_MSG2, random_prefix=WXJAVA_RANDOM) == WXJAVA_ENCRYPT2
    assert crypt.decrypt(WXJAVA_ENCRYPT) == (WXJAVA_MSG, WXJAVA_APPID)
    assert crypt.decrypt(WXJAVA_ENCRYPT2) == (WXJAVA_MSG2, WXJAVA_APPID)


def test_known_answer_tencent_python_sample_signature_and_plaintext() -> None:
    """Tencent's official Python sample (Sample.py by jonyqin, shipped with WXBizMsgCrypt;
    copy read in charlesXu86/Chatbot_CN, Chatbot_Web/impl/weixin/Sample.py): token
    "spamtest", appid "wx2c2769f8efd9abc2", timestamp 1409735669, nonce 1320562132,
    msg_sign 5d197aaf…, and the Encrypt of its from_xml. The plaintext is the message
    whose fields the sample shows beside the Encrypt (ToUserName gh_10f6c3c3ac5a, Content
    abcdteT, MsgId 6054768590064713728), line breaks as WeChat sent it."""
    crypt = MessageCrypt(TENCENT_TOKEN, SAMPLE_KEY, TENCENT_APPID)
    assert crypt.sign(TENCENT_TIMESTAMP, TENCENT_NONCE, TENCENT_ENCRYPT) == TENCENT_SIGNATURE
    crypt.verify(TENCENT_SIGNATURE, TENCENT_TIMESTAMP, TENCENT_NONCE, TENCENT_ENCRYPT)
    assert crypt.decrypt(TENCENT_ENCRYPT) == (TENCENT_PLAIN, TENCENT_APPID)
    assert (
        crypt.decrypt_verified(TENCENT_SIGNATURE, TENCENT_TIMESTAMP, TENCENT_NONCE, TENCENT_ENCRYPT)
        == TENCENT_PLAIN
    )
    assert signature(TENCENT_TOKEN, 1409735669, TENCENT_NONCE, TENCENT_ENCRYPT) == (
        TENCENT_SIGNATURE
    )
    with pytest.raises(BadSignature):
        crypt.verify(TENCENT_SIGNATURE, TENCENT_TIMESTAMP, "1320562133", TENCENT_ENCRYPT)


def test_known_answer_tencent_csharp_sample_with_a_30_byte_pad() -> None:
    """Tencent's official C# sample (Sample.cs of WXBizMsgCrypt; copy read in
    2830499544/VipCard, Chain.Wechat/Tencent/Sample.cs): token "QDG6eK", appid
    "wx5823bf96d3bd56c7", its own EncodingAESKey, sReqMsgSig 477715d1…, timestamp
    1409659813, nonce 1372623149. Its padding is 30 bytes: a 16-byte block size would
    refuse it, so this pins WeChat's 32."""
    crypt = MessageCrypt(CSHARP_TOKEN, CSHARP_KEY, CSHARP_APPID)
    crypt.verify(CSHARP_SIGNATURE, CSHARP_TIMESTAMP, CSHARP_NONCE, CSHARP_ENCRYPT)
    message, app_id = crypt.decrypt(CSHARP_ENCRYPT)
    assert app_id == CSHARP_APPID
    root = fromstring(message)
    assert root.findtext("ToUserName") == CSHARP_APPID
    assert root.findtext("FromUserName") == "mycreate"
    assert root.findtext("CreateTime") == CSHARP_TIMESTAMP
    assert _open_raw(CSHARP_KEY, CSHARP_ENCRYPT)[-1] == 30
    with pytest.raises(BadCiphertext):
        pkcs7_unpad(_open_raw(CSHARP_KEY, CSHARP_ENCRYPT), 16)


# ------------------------------------------------------------ round trips


@settings(max_examples=150, deadline=None)
@given(
    message=st.text(max_size=600),
    app_id=st.text(min_size=1, max_size=40),
    prefix=st.binary(min_size=16, max_size=16),
)
def test_round_trip(message: str, app_id: str, prefix: bytes) -> None:
    crypt = MessageCrypt(TOKEN, KEY, app_id)
    encrypted = crypt.encrypt_message(message, random_prefix=prefix)
    assert len(base64.b64decode(encrypted)) % BLOCK_SIZE == 0
    assert crypt.decrypt(encrypted) == (message, app_id)


@settings(max_examples=60, deadline=None)
@given(
    xml=st.text(min_size=1, max_size=300),
    nonce=st.text(alphabet="0123456789abcdef", min_size=1, max_size=16),
    timestamp=st.integers(min_value=0, max_value=2**40),
)
def test_encrypt_signs_and_decrypt_verified_opens(xml: str, nonce: str, timestamp: int) -> None:
    crypt = MessageCrypt(TOKEN, KEY, APPID)
    sealed = crypt.encrypt(xml, nonce, timestamp)
    assert sealed.timestamp == str(timestamp)
    assert sealed.nonce == nonce
    assert sealed.msg_signature == signature(TOKEN, timestamp, nonce, sealed.encrypt)
    assert crypt.decrypt_verified(sealed.msg_signature, timestamp, nonce, sealed.encrypt) == xml


def test_encrypt_defaults_and_reply_xml(crypt: MessageCrypt) -> None:
    before = int(time.time())
    first = crypt.encrypt("<xml><Content>hi</Content></xml>")
    second = crypt.encrypt("<xml><Content>hi</Content></xml>")
    assert isinstance(first, EncryptedMessage)
    assert first.encrypt != second.encrypt, "16 fresh random bytes each time"
    assert first.nonce.isdigit()
    assert before <= int(first.timestamp) <= int(time.time())
    root = fromstring(first.to_xml())
    assert root.findtext("Encrypt") == first.encrypt
    assert root.findtext("MsgSignature") == first.msg_signature
    assert root.findtext("TimeStamp") == first.timestamp
    assert root.findtext("Nonce") == first.nonce
    assert crypt.decrypt(first.encrypt)[0] == "<xml><Content>hi</Content></xml>"
    assert crypt.decrypt(crypt.encrypt_message(b"\x00bytes too"))[0] == "\x00bytes too"
    with pytest.raises(ValueError, match="16 bytes"):
        crypt.encrypt_message("x", random_prefix=b"short")


def test_verify_is_case_insensitive_and_refuses_near_misses(crypt: MessageCrypt) -> None:
    sealed = crypt.encrypt("<xml/>", "123", 1_700_000_000)
    crypt.verify(sealed.msg_signature.upper(), "1700000000", "123", sealed.encrypt)
    near = sealed.msg_signature[:-1] + ("0" if sealed.msg_signature[-1] != "0" else "1")
    for bad in ("", near, sealed.msg_signature[:-1], sealed.msg_signature + "0", "é" * 40):
        with pytest.raises(BadSignature):
            crypt.verify(bad, "1700000000", "123", sealed.encrypt)
    for timestamp, nonce, encrypt in (
        ("1700000001", "123", sealed.encrypt),
        ("1700000000", "124", sealed.encrypt),
        ("1700000000", "123", sealed.encrypt[:-4] + "AAA="),
    ):
        with pytest.raises(BadSignature):
            crypt.verify(sealed.msg_signature, timestamp, nonce, encrypt)
    other = MessageCrypt(TOKEN + "x", KEY, APPID)
    with pytest.raises(BadSignature):
        other.verify(sealed.msg_signature, "1700000000", "123", sealed.encrypt)


# ------------------------------------------------------------ padding


@given(st.binary(max_size=200))
def test_pkcs7_pads_to_32_with_1_to_32_bytes(data: bytes) -> None:
    padded = pkcs7_pad(data)
    assert len(padded) % 32 == 0
    assert 1 <= padded[-1] <= 32
    assert len(padded) - len(data) == padded[-1]
    assert pkcs7_unpad(padded) == data


def test_pkcs7_unpad_accepts_1_to_32_and_rejects_the_rest() -> None:
    body = bytes(range(64))
    for count in range(1, 33):
        block = body[: 64 - count] + bytes([count]) * count
        assert pkcs7_unpad(block) == body[: 64 - count]
    for last in (0, 33, 64, 255):
        with pytest.raises(BadCiphertext):
            pkcs7_unpad(body[:63] + bytes([last]))
    with pytest.raises(BadCiphertext):
        pkcs7_unpad(body[:60] + b"\x03\x04\x04\x04")  # one pad byte differs
    for data in (b"", b"\x01" * 31, b"\x01" * 33):
        with pytest.raises(BadCiphertext):
            pkcs7_unpad(data)
    with pytest.raises(ValueError):
        pkcs7_pad(b"", 0)


@pytest.mark.parametrize("last", [0, 33, 48, 200])
def test_decrypt_refuses_a_pad_value_outside_1_to_32(last: int) -> None:
    crypt = MessageCrypt(TOKEN, KEY, APPID)
    plain = b"R" * 16 + struct.pack(">I", 3) + b"abc" + APPID.encode()
    plain += b"\x00" * (64 - 1 - len(plain)) + bytes([last])
    with pytest.raises(BadCiphertext):
        crypt.decrypt(_seal_raw(KEY, plain))


def test_decrypt_accepts_a_full_block_of_padding() -> None:
    crypt = MessageCrypt(TOKEN, KEY, APPID)
    message = "m" * (64 - 20 - len(APPID))  # the framed plaintext is exactly 64 bytes
    encrypted = crypt.encrypt_message(message)
    assert _open_raw(KEY, encrypted)[-32:] == bytes([32]) * 32
    assert crypt.decrypt(encrypted) == (message, APPID)


# ------------------------------------------------------------ malformed messages


def test_wrong_app_id(crypt: MessageCrypt) -> None:
    other = MessageCrypt(TOKEN, KEY, "wxsomebody-else")
    encrypted = other.encrypt_message("<xml/>")
    with pytest.raises(AppIdMismatch):
        crypt.decrypt(encrypted)
    assert crypt.decrypt(encrypted, check_app_id=False) == ("<xml/>", "wxsomebody-else")
    prefixed = MessageCrypt(TOKEN, KEY, APPID + "x").encrypt_message("<xml/>")
    with pytest.raises(AppIdMismatch):
        crypt.decrypt(prefixed)


def test_a_length_field_beyond_the_plaintext_is_refused(crypt: MessageCrypt) -> None:
    for length in (1000, 2**32 - 1, 3 + len(APPID) + 1):
        plain = pkcs7_pad(b"R" * 16 + struct.pack(">I", length) + b"abc" + APPID.encode())
        with pytest.raises(BadCiphertext):
            crypt.decrypt(_seal_raw(KEY, plain))
    short = pkcs7_pad(b"R" * 16 + b"\x00\x00")  # shorter than the 20-byte header
    with pytest.raises(BadCiphertext):
        crypt.decrypt(_seal_raw(KEY, short))


def test_a_message_that_is_not_utf8_is_refused(crypt: MessageCrypt) -> None:
    plain = pkcs7_pad(b"R" * 16 + struct.pack(">I", 2) + b"\xff\xfe" + APPID.encode())
    with pytest.raises(BadCiphertext):
        crypt.decrypt(_seal_raw(KEY, plain))
    plain = pkcs7_pad(b"R" * 16 + struct.pack(">I", 2) + b"ok" + b"\xff")
    with pytest.raises(BadCiphertext):
        crypt.decrypt(_seal_raw(KEY, plain))


@pytest.mark.parametrize(
    "encrypt",
    [
        "",
        "not base64!",
        "QUJD",  # 3 bytes: not whole blocks
        base64.b64encode(b"x" * 16).decode(),  # one AES block, not a WeChat block
        base64.b64encode(b"x" * 48).decode(),
        WXJAVA_ENCRYPT.rstrip("="),  # padding removed
        WXJAVA_ENCRYPT + "\n",
        "\uff4a\uff4e\uff11\uff2c",  # fullwidth, non-ASCII
    ],
)
def test_garbage_is_bad_ciphertext(encrypt: str) -> None:
    crypt = MessageCrypt(WXJAVA_TOKEN, SAMPLE_KEY, WXJAVA_APPID)
    with pytest.raises(BadCiphertext):
        crypt.decrypt(encrypt)


def test_every_truncation_fails_cleanly() -> None:
    crypt = MessageCrypt(WXJAVA_TOKEN, SAMPLE_KEY, WXJAVA_APPID)
    sealed = base64.b64decode(WXJAVA_ENCRYPT2)
    for cut in range(len(sealed)):
        with pytest.raises(WxCryptError):
            crypt.decrypt(base64.b64encode(sealed[:cut]).decode())
    for cut in range(1, len(WXJAVA_ENCRYPT2)):
        with pytest.raises(WxCryptError):
            crypt.decrypt(WXJAVA_ENCRYPT2[:cut])


def _flips(data: bytes) -> Iterator[bytes]:
    for index in range(len(data)):
        for mask in (0x01, 0x80):
            tampered = bytearray(data)
            tampered[index] ^= mask
            yield bytes(tampered)


def test_every_flipped_byte_fails_the_signature() -> None:
    crypt = MessageCrypt(TENCENT_TOKEN, SAMPLE_KEY, TENCENT_APPID)
    for tampered in _flips(base64.b64decode(TENCENT_ENCRYPT)):
        encrypt = base64.b64encode(tampered).decode()
        with pytest.raises(BadSignature):
            crypt.decrypt_verified(TENCENT_SIGNATURE, TENCENT_TIMESTAMP, TENCENT_NONCE, encrypt)


def test_every_flipped_byte_without_the_signature_fails_or_changes_the_message() -> None:
    """CBC is malleable, so decryption alone cannot catch every change (that is the
    signature's job); but it never fails with anything but a WxCryptError, and whatever
    it returns differs from the original."""
    crypt = MessageCrypt(TENCENT_TOKEN, SAMPLE_KEY, TENCENT_APPID)
    original = (TENCENT_PLAIN, TENCENT_APPID)
    refused = 0
    for tampered in _flips(base64.b64decode(TENCENT_ENCRYPT)):
        try:
            result = crypt.decrypt(base64.b64encode(tampered).decode())
        except WxCryptError:
            refused += 1
            continue
        assert result != original
    assert refused > 0


# ------------------------------------------------------------ keys and secrecy


@pytest.mark.parametrize(
    "key",
    [
        SAMPLE_KEY[:-1],  # 42
        SAMPLE_KEY + "=",  # 44, the "=" WeChat's console does not show
        SAMPLE_KEY + "H",
        SAMPLE_KEY[:-1] + "-",
        SAMPLE_KEY[:-1] + "é",
        "",
    ],
)
def test_a_bad_encoding_aes_key_is_refused_without_echoing_it(key: str) -> None:
    with pytest.raises(BadEncodingAESKey) as caught:
        MessageCrypt(TOKEN, key, APPID)
    exc = caught.value
    assert isinstance(exc, ValueError)
    assert "43" in str(exc)
    if key:
        assert key not in str(exc)
        assert key[:20] not in str(exc) + repr(exc)
    assert exc.__cause__ is None
    assert exc.__context__ is None


def test_constructor_refuses_empty_token_and_app_id() -> None:
    with pytest.raises(ValueError, match="token"):
        MessageCrypt("", KEY, APPID)
    with pytest.raises(ValueError, match="AppId"):
        MessageCrypt(TOKEN, KEY, "")
    with pytest.raises(BadEncodingAESKey):
        MessageCrypt(TOKEN, None, APPID)  # type: ignore[arg-type]


def test_repr_and_pickle_never_expose_the_key_or_token(crypt: MessageCrypt) -> None:
    assert repr(crypt) == f"MessageCrypt(app_id={APPID!r})"
    assert crypt.app_id == APPID
    assert KEY not in repr(crypt)
    assert TOKEN not in repr(crypt)
    with pytest.raises(TypeError):
        pickle.dumps(crypt)


def _failures(crypt: MessageCrypt) -> Iterator[WxCryptError]:
    sealed = crypt.encrypt("<xml><Secret>plaintext-marker</Secret></xml>", "1", 1)
    attempts = [
        lambda: crypt.verify("0" * 40, 1, "1", sealed.encrypt),
        lambda: crypt.decrypt("%%%"),
        lambda: crypt.decrypt(base64.b64encode(b"x" * 32).decode()),
        lambda: MessageCrypt(TOKEN, KEY, "wxother").decrypt(sealed.encrypt),
        lambda: MessageCrypt(TOKEN, KEY[:-1] + "!", APPID),
    ]
    for attempt in attempts:
        try:
            attempt()
        except WxCryptError as exc:
            yield exc
        else:  # pragma: no cover - every attempt must fail
            pytest.fail("expected a WxCryptError")


def test_errors_carry_no_key_token_or_plaintext(crypt: MessageCrypt) -> None:
    reasons = set()
    for exc in _failures(crypt):
        reasons.add(exc.reason)
        text = f"{exc}|{exc!r}|{exc.args!r}"
        for secret in (KEY, KEY[:16], TOKEN, "plaintext-marker"):
            assert secret not in text
        assert exc.__cause__ is None
        assert exc.__context__ is None
    assert reasons == {
        "bad_signature",
        "bad_ciphertext",
        "app_id_mismatch",
        "bad_encoding_aes_key",
    }
