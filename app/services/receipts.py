"""Receipts: delivery and read receipts leave after a random delay, in batches (issue 14).

A receipt that left milliseconds after each push would let the relay pair sender and
recipient over a few messages, sealed sender or not (Martiny et al., NDSS 2021). So a
receipt is not sealed when its cause happens: ``record`` writes it as pending (storage/
receipts.py) in the caller's transaction, due after a delay drawn uniformly from
``ReceiptDelays`` with the engine's ``RandomSource``. When the first pending receipt of a
device falls due, every pending receipt of that kind for that device goes with it: one
``Receipt`` per (device, kind), split at ``RECEIPT_IDS`` ids, sealed and queued in one
transaction that removes the rows. The envelope is padded like any other (app/crypto/sealed.py).

What the delay does not hide: that the recipient's device sends something some seconds to a
minute after it was pushed to, if the relay can tell its sends apart (see docs/PROTOCOL.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app.crypto.primitives import RandomSource
from app.protocol.content import Receipt, ReceiptType
from app.protocol.lifetime import envelope_expiry
from app.services.clock import Clock
from app.services.credentials import Credentials
from app.services.delivery import Delivery
from app.services.rules import RulesSource
from app.services.sessions import Sessions
from app.services.settings import read_receipts_enabled
from app.services.tasks import Tasks
from storage.store import Store

log = logging.getLogger(__name__)

RECEIPT_IDS = 512
"""Message ids per receipt."""
LEAD_SECONDS = 1.0
"""How long before a disappearing message's expiry its receipts leave, so they go before it does."""
RETRY_SECONDS = 30.0
"""How long receipts that fell due but could not be sealed wait before the next try."""
_DRAW_BYTES = 8


@dataclass(frozen=True, slots=True)
class ReceiptDelays:
    """How long a receipt waits before it is sealed, drawn uniformly in [minimum, maximum] seconds.

    The defaults: five seconds at least, so that a receipt never follows its push closely enough
    to be matched to it; a minute at most, so that "delivered" still shows while the sender is
    looking, and a burst of messages (a conversation) falls within one delay and goes back as
    one envelope. Tests pass a fraction of a second.
    """

    minimum: float = 5.0
    maximum: float = 60.0

    def __post_init__(self) -> None:
        if not 0 <= self.minimum <= self.maximum:
            raise ValueError("receipt delays need 0 <= minimum <= maximum")

    def draw(self, random: RandomSource) -> float:
        fraction = int.from_bytes(random(_DRAW_BYTES), "big") / float(2 ** (8 * _DRAW_BYTES) - 1)
        return self.minimum + (self.maximum - self.minimum) * fraction


class Receipts:
    """Pending receipts: recorded with their cause, sealed in batches when they fall due."""

    def __init__(
        self,
        store: Store,
        *,
        credentials: Credentials,
        sessions: Sessions,
        delivery: Delivery,
        tasks: Tasks,
        clock: Clock,
        random: RandomSource,
        rules: RulesSource,
        delays: ReceiptDelays,
    ) -> None:
        self._store = store
        self._credentials = credentials
        self._sessions = sessions
        self._delivery = delivery
        self._clock = clock
        self._random = random
        self._rules = rules
        self._delays = delays
        self._alarm = tasks.alarm()
        self._armed_at: float | None = None

    def record(
        self, message: int, kind: ReceiptType, account_id: str, device_id: int, *, before: float | None = None
    ) -> None:
        """A receipt for the message is owed to the sender's device; call inside the transaction that
        causes it. The alarm is moved once that transaction has committed.

        ``before``: when the message disappears here, if it does; the receipt is due by then (less
        ``LEAD_SECONDS``), else its row would go with the message and the sender never hear. That
        time follows the reading, not the push, so it tells the relay no more than the delay does.
        """
        now = self._clock()
        due_at = now + self._delays.draw(self._random)
        if before is not None:
            due_at = min(due_at, max(now, before - LEAD_SECONDS))
        if self._store.pending_receipts.add(message, int(kind), account_id, device_id, due_at):
            self._store.after_commit(self.arm)

    def hasten(self, message: int, before: float) -> None:
        """The message now disappears at ``before``: its waiting receipts are due by then (see ``record``)."""
        due_at = max(self._clock(), before - LEAD_SECONDS)
        if self._store.pending_receipts.hasten(message, due_at):
            self._store.after_commit(self.arm)

    def arm(self) -> None:
        """Set the alarm to the earliest pending receipt (after a restart too)."""
        due = self._store.pending_receipts.next_due()
        if due is None:
            self._alarm.cancel()
            self._armed_at = None
            return
        if self._armed_at is not None and self._armed_at <= due:
            return
        self._armed_at = due
        self._alarm.set(due - self._clock(), self._ring)

    def _ring(self) -> None:
        """Seal what is due. What stays due (no certificate yet, or sealing failed) is tried again after
        ``RETRY_SECONDS``, not at once: re-arming for a due time in the past would ring in a loop."""
        self._armed_at = None
        try:
            self.seal_due()
        except Exception:
            log.exception("pending receipts could not be sealed; they are tried again later")
        due = self._store.pending_receipts.next_due()
        if due is not None and due <= self._clock():
            self._armed_at = self._clock() + RETRY_SECONDS
            self._alarm.set(RETRY_SECONDS, self._ring)
            return
        self.arm()

    def seal_due(self, now: float | None = None) -> int:
        """Seal the receipts of every device whose first pending one is due at ``now`` (default: the
        clock); how many envelopes.

        A device with no session any more (revoked, forgotten) gets none: its rows go. Read
        receipts turned off since the reading are not sent either. Needs the certificate to seal;
        without one they wait.
        """
        if self._store.pending_receipts.next_due() is None or not self._can_seal():
            return 0
        sealed = 0
        now = self._clock() if now is None else now
        tell_read = self._rules().read_receipts_allowed and read_receipts_enabled(self._store)
        with self._store.transaction():
            for account_id, device_id, kind in self._store.pending_receipts.due_devices(now):
                waiting = self._store.pending_receipts.of_device(account_id, device_id, kind)
                rows = [p.message for p in waiting]
                keep = self._sessions.has(account_id, device_id)
                if kind == ReceiptType.READ and not tell_read:
                    keep = False
                if keep:
                    for start in range(0, len(waiting), RECEIPT_IDS):
                        chunk = waiting[start : start + RECEIPT_IDS]
                        receipt = Receipt(
                            ReceiptType(kind),
                            int(max(p.at for p in chunk) * 1000),
                            tuple(p.message_id for p in chunk),
                        )
                        self._sessions.seal(
                            account_id, device_id, receipt, envelope_expiry(self._clock()), message_id=None
                        )
                        sealed += 1
                self._store.pending_receipts.remove(rows, kind)
        if sealed:
            self._delivery.kick()
        return sealed

    def _can_seal(self) -> bool:
        """Whether this device holds a certificate to seal with (else the receipts wait for one)."""
        return self._credentials.certificate is not None
