"""Content and control messages: round trips, padding, and every kind of refusal."""

from __future__ import annotations

import pytest
from hypothesis import given
from nacl import bindings

from app.base.codec import Writer
from app.base.errors import LocalProtocolError, RemoteProtocolError, UnsupportedVersionError
from app.base.limits import MAX_TEXT_BYTES, PADDING_BLOCK_BYTES
from app.protocol.checkpoint import MAX_NOTE_BYTES
from app.protocol.content import (
    Content,
    ContentKind,
    MessageHeader,
    Receipt,
    ReceiptType,
    TextMessage,
    TimerChange,
    encode_content,
    parse_content,
)
from tests.protocol.strategies import contents

HEADER = MessageHeader(message_id=b"\x11" * 16, sent_at=1_700_000_000_000, expire_after=3600)


@given(contents)
def test_every_content_round_trips_padded(content: Content) -> None:
    """Test that any valid content parses back to itself and is padded to whole blocks."""
    encoded = encode_content(content)
    assert len(encoded) % PADDING_BLOCK_BYTES == 0
    assert parse_content(encoded) == content


def test_short_texts_of_different_lengths_encrypt_to_the_same_size() -> None:
    """Test that padding hides the length of short texts."""
    sizes = {len(encode_content(TextMessage(HEADER, "x" * n))) for n in (1, 20, 80)}
    assert sizes == {PADDING_BLOCK_BYTES}


def _padded(raw: bytes) -> bytes:
    return bindings.sodium_pad(raw, PADDING_BLOCK_BYTES)


def _raw(content: Content) -> bytes:
    return bindings.sodium_unpad(encode_content(content), PADDING_BLOCK_BYTES)


def test_trailing_bytes_inside_the_padding_are_refused() -> None:
    """Test that bytes after a complete message are refused."""
    with pytest.raises(RemoteProtocolError, match="trailing"):
        parse_content(_padded(_raw(TextMessage(HEADER, "hi")) + b"\x00"))


def test_unknown_content_version_is_refused_as_unsupported() -> None:
    """Test that a content of a future version raises UnsupportedVersionError, marked unknown."""
    raw = _raw(TextMessage(HEADER, "hi"))
    with pytest.raises(UnsupportedVersionError) as raised:
        parse_content(_padded(b"\x07" + raw[1:]))
    assert raised.value.known is False


def test_unknown_kind_and_flags_are_refused() -> None:
    """Test that an undefined kind byte or an undefined flag bit is refused."""
    raw = _raw(TextMessage(HEADER, "hi"))
    with pytest.raises(RemoteProtocolError, match="kind"):
        parse_content(_padded(raw[:1] + b"\x63" + raw[2:]))
    flags_at = 2 + 16 + 8 + 4
    with pytest.raises(RemoteProtocolError, match="flags"):
        parse_content(_padded(raw[:flags_at] + b"\x08" + raw[flags_at + 1 :]))
    both = raw[:flags_at] + b"\x03" + bytes(32) + raw[flags_at + 1 :]
    with pytest.raises(RemoteProtocolError, match="both"):
        parse_content(_padded(both))


def test_a_key_log_head_travels_after_the_chat_id_and_an_empty_or_long_one_is_refused() -> None:
    """Test that a message and a timer change carry the sender's key log head after the secret
    chat id (flags bit 2), and that an empty head, or one above the note limit, is refused."""
    header = MessageHeader(b"\x01" * 16, 5, 30, secret_id=b"\x05" * 16, log_head=b"head\n")
    raw = _raw(TextMessage(header, "hi"))
    flags_at = 2 + 16 + 8 + 4
    assert raw[flags_at] == 0x06 and raw[flags_at + 17 : flags_at + 24] == b"\x00\x05head\n"
    change = TimerChange(30, 7, log_head=b"\xff" * MAX_NOTE_BYTES)
    assert parse_content(encode_content(change)) == change
    empty = raw[: flags_at + 17] + b"\x00\x00" + raw[flags_at + 24 :]
    with pytest.raises(RemoteProtocolError, match="empty key log head"):
        parse_content(_padded(empty))
    too_long = Writer("t").u8(1).u8(ContentKind.TIMER_CHANGE).u64(7).u32(30).u8(0x04)
    too_long.u16(MAX_NOTE_BYTES + 1).fixed(bytes(MAX_NOTE_BYTES + 1), MAX_NOTE_BYTES + 1, "head")
    with pytest.raises(RemoteProtocolError):
        parse_content(_padded(too_long.getvalue()))
    with pytest.raises(LocalProtocolError):
        MessageHeader(b"\x01" * 16, 5, 30, log_head=b"")


def test_secret_chat_messages_carry_their_chat_id_and_a_timer() -> None:
    """Test that a secret chat id round-trips and a secret message or timer change needs a timer."""
    secret = MessageHeader(b"\x01" * 16, 5, 30, secret_id=b"\x05" * 16)
    assert parse_content(encode_content(TextMessage(secret, "hi"))) == TextMessage(secret, "hi")
    change = TimerChange(60, 5, secret_id=b"\x05" * 16)
    assert parse_content(encode_content(change)) == change
    with pytest.raises(LocalProtocolError, match="timer"):
        MessageHeader(b"\x01" * 16, 5, 0, secret_id=b"\x05" * 16)
    with pytest.raises(LocalProtocolError, match="timer"):
        TimerChange(0, 5, secret_id=b"\x05" * 16)
    with pytest.raises(LocalProtocolError, match="not both"):
        MessageHeader(b"\x01" * 16, 5, 30, group_id=b"\x02" * 16, secret_id=b"\x05" * 16)


def test_bad_padding_and_partial_blocks_are_refused() -> None:
    """Test that content whose padding is wrong or whose length is not whole blocks is refused."""
    encoded = encode_content(TextMessage(HEADER, "hi"))
    for bad in (b"", encoded[:-1], b"\x00" * PADDING_BLOCK_BYTES, encoded + b"\x00" * PADDING_BLOCK_BYTES):
        with pytest.raises(RemoteProtocolError):
            parse_content(bad)


def test_invalid_utf8_text_is_refused() -> None:
    """Test that a text that is not UTF-8 is refused rather than replaced."""
    w = Writer("test").u8(1).u8(ContentKind.TEXT)
    HEADER.write(w)
    w.var32(b"\xff\xfe", MAX_TEXT_BYTES, "text")
    with pytest.raises(RemoteProtocolError, match="UTF-8"):
        parse_content(_padded(w.getvalue()))


def test_receipt_with_too_many_ids_is_refused() -> None:
    """Test that a receipt claiming more ids than the limit is refused before it is read."""
    raw = Writer("test").u8(1).u8(ContentKind.RECEIPT).u8(ReceiptType.READ).u64(1).u16(60000).getvalue()
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        parse_content(_padded(raw))


def test_empty_receipt_is_refused_when_parsed() -> None:
    """Test that a receipt naming no message is a remote error, not a crash."""
    raw = Writer("test").u8(1).u8(ContentKind.RECEIPT).u8(ReceiptType.READ).u64(1).u16(0).getvalue()
    with pytest.raises(RemoteProtocolError):
        parse_content(_padded(raw))


@pytest.mark.parametrize(
    "build",
    [
        lambda: TextMessage(HEADER, ""),
        lambda: TextMessage(HEADER, "x" * (MAX_TEXT_BYTES + 1)),
        lambda: MessageHeader(message_id=b"short", sent_at=0, expire_after=0),
        lambda: MessageHeader(message_id=b"\x00" * 16, sent_at=0, expire_after=-1),
        lambda: Receipt(ReceiptType.DELIVERED, 0, ()),
        lambda: TimerChange(timer_seconds=10**9, changed_at=0),
    ],
)
def test_building_invalid_content_is_a_local_error(build: object) -> None:
    """Test that constructing content the format cannot carry raises LocalProtocolError."""
    with pytest.raises(LocalProtocolError):
        build()  # type: ignore[operator]
