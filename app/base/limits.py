"""Every size and count limit of Enclave's formats, in one place.

Parsers check untrusted lengths against these before they allocate or loop; a value
past a limit is a ``RemoteProtocolError``, never a truncation. docs/PROTOCOL.md quotes
them.
"""

from __future__ import annotations

# Keys and signatures (libsodium sizes; named so parsers read as the spec does).
KEY_BYTES = 32
SIGNATURE_BYTES = 64
AEAD_TAG_BYTES = 16
XCHACHA_NONCE_BYTES = 24

ENVELOPE_ID_BYTES = 16
DELIVERY_KEY_BYTES = 16
"""A device's delivery key (docs/PROTOCOL.md section 15, unidentified delivery): 128 random bits."""
"""An envelope id: in the envelope, and bound inside its sealed layer."""

# The Double Ratchet.
MAX_SKIP = 1000
"""Most message keys one received chain may skip ahead by; a message further ahead is refused."""

MAX_STORED_SKIPPED_KEYS = 2000
"""Most skipped message keys a session keeps across chains; the oldest are dropped beyond it."""

MAX_CHAIN_LENGTH = 0xFFFFFFFF
"""A sending chain may not pass this counter (the header carries 32-bit counters)."""

# Plaintext sizes.
MAX_PLAINTEXT_BYTES = 256 * 1024
"""Largest content a ratchet message carries (a text or a file pointer, never a file)."""

MAX_RATCHET_MESSAGE_BYTES = MAX_PLAINTEXT_BYTES + 1024
MAX_SEALED_BYTES = MAX_RATCHET_MESSAGE_BYTES + 2048
MAX_ENVELOPE_BYTES = MAX_SEALED_BYTES + 64

PADDING_BLOCK_BYTES = 160
"""Content is padded to a multiple of this so ciphertext lengths say little about the text."""

# Identifiers and text fields.
MAX_ACCOUNT_ID_BYTES = 64
MAX_TEXT_BYTES = 64 * 1024
MAX_FILENAME_BYTES = 255
MAX_MIME_TYPE_BYTES = 127
MAX_RECEIPT_MESSAGE_IDS = 512
MAX_ATTACHMENT_BYTES = 2 * 1024 * 1024 * 1024
MAX_TIMER_SECONDS = 366 * 24 * 3600
"""Longest disappearing-message timer (a year and a day); 0 means "off"."""

MAX_SESSION_STATE_BYTES = 256 * 1024
