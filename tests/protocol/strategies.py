"""Hypothesis strategies for every content and control message, and the relay frames that
register and authenticate a device."""

from __future__ import annotations

from hypothesis import strategies as st

from app.base.limits import MAX_RECEIPT_MESSAGE_IDS, MAX_TIMER_SECONDS
from app.crypto.keys import NO_ONE_TIME_PREKEY
from app.protocol.content import (
    FileMessage,
    KeyUpdate,
    KeyUpdateAction,
    MessageHeader,
    Receipt,
    ReceiptType,
    TextMessage,
    TimerChange,
)
from app.protocol.frames import (
    MAX_CERTIFICATE_FRAME_BYTES,
    MAX_PREKEYS_PER_UPLOAD,
    MAX_UPLOAD_TOKEN_BYTES,
    Authenticate,
    Authenticated,
    Enrol,
    SignedPreKeyUpload,
    UploadedPreKey,
)

ids = st.binary(min_size=16, max_size=16)
millis = st.integers(min_value=0, max_value=2**63 - 1)
timers = st.integers(min_value=0, max_value=MAX_TIMER_SECONDS)
names = st.text(min_size=1, max_size=40)
log_heads = st.none() | st.binary(min_size=1, max_size=300)
"""A key log head is opaque to the content layer: any 1 to 4096 bytes travel."""

headers = st.builds(
    MessageHeader,
    message_id=ids,
    sent_at=millis,
    expire_after=timers,
    group_id=st.none() | ids,
    log_head=log_heads,
) | st.builds(
    MessageHeader,
    message_id=ids,
    sent_at=millis,
    expire_after=timers.filter(bool),
    secret_id=ids,
    log_head=log_heads,
)
text_messages = st.builds(TextMessage, header=headers, text=st.text(min_size=1, max_size=300))
file_messages = st.builds(
    FileMessage,
    header=headers,
    attachment_id=st.binary(min_size=1, max_size=64),
    key=st.binary(min_size=32, max_size=32),
    digest=st.binary(min_size=32, max_size=32),
    size=st.integers(min_value=0, max_value=2**31),
    filename=names,
    mime_type=st.text(max_size=40),
    caption=st.text(max_size=100),
)
receipts = st.builds(
    Receipt,
    receipt_type=st.sampled_from(ReceiptType),
    timestamp=millis,
    message_ids=st.lists(ids, min_size=1, max_size=min(MAX_RECEIPT_MESSAGE_IDS, 20)).map(tuple),
)
timer_changes = st.builds(
    TimerChange, timer_seconds=timers, changed_at=millis, group_id=st.none() | ids, log_head=log_heads
) | st.builds(
    TimerChange, timer_seconds=timers.filter(bool), changed_at=millis, secret_id=ids, log_head=log_heads
)
key_updates = st.builds(KeyUpdate, action=st.sampled_from(KeyUpdateAction))
contents = st.one_of(text_messages, file_messages, receipts, timer_changes, key_updates)

u32s = st.integers(min_value=0, max_value=2**32 - 1)
keys = st.binary(min_size=32, max_size=32)
signatures = st.binary(min_size=64, max_size=64)
certificates = st.binary(max_size=MAX_CERTIFICATE_FRAME_BYTES)
"""A certificate as the frames carry it: opaque bytes up to the limit (the relay parses them)."""
signed_prekeys = st.builds(SignedPreKeyUpload, key_id=u32s, public=keys, signature=signatures)
one_time_prekeys = st.lists(
    st.builds(UploadedPreKey, key_id=u32s.filter(lambda key_id: key_id != NO_ONE_TIME_PREKEY), public=keys),
    max_size=min(MAX_PREKEYS_PER_UPLOAD, 20),
).map(tuple)
enrolments = st.builds(
    Enrol,
    certificate=certificates,
    signature=signatures,
    signed_prekey=signed_prekeys,
    one_time_prekeys=one_time_prekeys,
)
authentications = st.builds(Authenticate, device_id=u32s, signature=signatures, certificate=certificates)
authenticated = st.builds(Authenticated, upload_token=st.binary(max_size=MAX_UPLOAD_TOKEN_BYTES))
