"""The interactive session of the local workspace and of ``enclave-cli chat``: a small REPL.

Lines are read with ``input()`` on the main thread; a printer thread takes the core's
events from the session's queue and prints arriving messages as they come. Neither
blocks the core: both only wait on the facade's futures. A message arriving while no
conversation is chosen chooses its conversation, so a newcomer can simply answer.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from app.base.errors import EnclaveError
from app.services.events import Event, KeyChanged, MessageArrived, MessageHeld, MessageStatusChanged
from app.services.types import Conversation, ConversationKind, Message
from cli import output
from cli.errors import CliError
from cli.output import clean
from cli.session import POLL_SECONDS, Session

QUIT_SECONDS = 10.0
"""How long leaving waits for messages still on their way to the relay."""
HISTORY_MESSAGES = 20
HELP = """\
  /to ACCOUNT              write to a colleague (found in the directory if not a contact yet)
  /secret ACCOUNT SECONDS  start a secret chat whose messages disappear after SECONDS
  /open ID                 switch to a conversation by its id (see /conversations)
  /conversations           list your conversations
  /timer SECONDS           set the disappearing timer of this conversation (0: off)
  /history [N]             the last N messages of this conversation
  /contacts [QUERY]        your contacts; with QUERY, search the directory and add who matches
  /safety ACCOUNT          the safety numbers to compare with a colleague
  /accept ACCOUNT          accept a colleague's new key (compare safety numbers first)
  /quit                    leave (Ctrl-D or Ctrl-C too)
  anything else            is sent to the current conversation"""


class Chat:
    def __init__(self, session: Session) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._current: Conversation | None = None
        self._controls_queued = False
        self._sent: set[int] = set()
        """Messages sent in this session, whose progress (sent, delivered, read) is shown."""
        self._stop = threading.Event()
        self._commands: dict[str, Callable[[list[str]], None]] = {
            "/to": self._to,
            "/secret": self._secret,
            "/open": self._open,
            "/conversations": self._conversations,
            "/timer": self._timer,
            "/history": self._history,
            "/contacts": self._contacts,
            "/safety": self._safety,
            "/accept": self._accept,
            "/help": lambda _: self._say(HELP),
        }

    def run(self) -> int:
        printer = threading.Thread(target=self._print_events, name="enclave-chat-events", daemon=True)
        printer.start()
        self._say("Type /help for the commands; /to ACCOUNT chooses whom to write to.")
        try:
            self._read_lines()
        except KeyboardInterrupt:
            self._say("")
        self._finish()
        self._stop.set()
        printer.join()
        return 0

    def _say(self, text: str) -> None:
        with self._lock:
            print(text, flush=True)

    def _read_lines(self) -> None:
        prompt = "> " if sys.stdin.isatty() else ""
        while True:
            try:
                line = input(prompt).strip()
            except EOFError:
                return
            if line == "/quit":
                return
            try:
                self._handle(line)
            except (EnclaveError, OSError) as e:
                self._say(f"! {output.one_line(e)}")

    def _handle(self, line: str) -> None:
        if not line:
            return
        if not line.startswith("/"):
            message = self._session.call(self._session.enclave.send_text(self._conversation().id, line))
            self._sent.add(message.id)
            return
        name, *words = line.split()
        command = self._commands.get(name)
        if command is None:
            raise CliError(f"no command {name}; /help lists them")
        command(words)

    def _finish(self) -> None:
        """Give messages on their way (and queued receipts) a bounded moment to reach the relay."""
        call, enclave = self._session.call, self._session.enclave
        deadline = time.monotonic() + QUIT_SECONDS
        while self._session.online and call(enclave.pending()) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS / 5)
        waiting = call(enclave.pending())
        if waiting:
            self._say(f"{len(waiting)} messages wait in the outbox; they leave at the next connection.")
        if self._controls_queued:
            self._session.linger()

    # The current conversation.

    def _conversation(self) -> Conversation:
        with self._lock:
            current = self._current
        if current is None:
            raise CliError("choose whom to write to first: /to ACCOUNT")
        return current

    def _switch(self, conversation: Conversation) -> None:
        with self._lock:
            self._current = conversation
        secret = (
            f", a secret chat: messages disappear after {conversation.timer_seconds} s"
            if conversation.kind is ConversationKind.SECRET
            else ""
        )
        self._say(f"Now writing to {clean(conversation.title)} (conversation {conversation.id}{secret}).")

    # Commands.

    def _to(self, words: list[str]) -> None:
        [account] = _words(words, 1, "/to ACCOUNT")
        self._switch(self._session.direct_conversation(account))

    def _secret(self, words: list[str]) -> None:
        account, seconds = _words(words, 2, "/secret ACCOUNT SECONDS")
        self._session.require_online()
        self._session.contact(account)
        self._switch(self._session.call(self._session.enclave.start_secret_chat(account, _number(seconds))))
        self._controls_queued = True

    def _open(self, words: list[str]) -> None:
        [wanted] = _words(words, 1, "/open ID")
        for summary in self._session.call(self._session.enclave.conversations()):
            if str(summary.conversation.id) == wanted:
                self._switch(summary.conversation)
                return
        raise CliError(f"no conversation {wanted}; /conversations lists them")

    def _conversations(self, words: list[str]) -> None:
        for summary in self._session.call(self._session.enclave.conversations()):
            c = summary.conversation
            details = [str(c.kind)]
            if c.timer_seconds:
                details.append(f"timer {c.timer_seconds} s")
            if summary.unread:
                details.append(f"{summary.unread} unread")
            if summary.blocked:
                details.append("key changed: /safety to compare")
            self._say(f"  {c.id}  {clean(c.title)} ({', '.join(details)})")

    def _timer(self, words: list[str]) -> None:
        [seconds] = _words(words, 1, "/timer SECONDS")
        current = self._conversation()
        self._session.require_online()
        updated = self._session.call(self._session.enclave.set_timer(current.id, _number(seconds)))
        with self._lock:
            self._current = updated
        self._controls_queued = True

    def _history(self, words: list[str]) -> None:
        limit = _number(words[0]) if words else HISTORY_MESSAGES
        own = self._session.enrolled().account_id
        page = self._session.call(self._session.enclave.history(self._conversation().id, limit=limit))
        for message in reversed(page.messages):
            sender = clean(own if message.outgoing else message.sender)
            self._say(f"  {_clock(message.sent_at)} {sender}: {self._text(message)} [{message.status}]")

    def _contacts(self, words: list[str]) -> None:
        if words:
            contacts = self._session.add_from_directory(" ".join(words))
        else:
            contacts = self._session.call(self._session.enclave.contacts())
        if not contacts:
            self._say("  nobody yet; /contacts QUERY searches the directory")
        for contact in contacts:
            department = f", {clean(contact.department)}" if contact.department else ""
            self._say(f"  {clean(contact.account_id)}  {clean(contact.display_name)}{department}")

    def _safety(self, words: list[str]) -> None:
        [account] = _words(words, 1, "/safety ACCOUNT")
        views = self._session.call(self._session.enclave.safety_numbers(account))
        if not views:
            raise CliError(f"no device of {account} is known yet: exchange a message first")
        for view in views:
            self._say(f"  device {view.device_id}: {output.safety_groups(view.digits)} ({view.trust})")
        self._say("  Compare these digits with your colleague's, in person or by phone.")

    def _accept(self, words: list[str]) -> None:
        [account] = _words(words, 1, "/accept ACCOUNT")
        self._session.call(self._session.enclave.accept_key_change(account))
        self._say(f"  Accepted {clean(account)}'s new key; messages that waited for it leave now.")

    # Events.

    def _print_events(self) -> None:
        while not self._stop.is_set():
            event = self._session.next_event(time.monotonic() + POLL_SECONDS)
            if event is None:
                continue
            try:
                self._show(event)
            except EnclaveError as e:
                self._say(f"! {output.one_line(e)}")

    def _show(self, event: Event) -> None:
        if isinstance(event, MessageArrived):
            self._arrived(event)
        elif isinstance(event, MessageStatusChanged):
            if event.message_id in self._sent:
                self._say(f"  (message {event.message_id} {event.status})")
        elif isinstance(event, MessageHeld):
            account = clean(event.account_id)
            self._say(
                f"  (message {event.message_id} waits until you accept {account}'s new key: "
                f"/safety {account} to compare, then /accept {account})"
            )
        elif isinstance(event, KeyChanged):
            account = clean(event.account_id)
            self._say(
                f"* key changed: {account} device {event.device_id}; /safety {account} to compare "
                f"with them, then /accept {account}"
            )
        elif (text := output.event_note(event)) is not None:
            self._say(f"* {text}")

    def _arrived(self, event: MessageArrived) -> None:
        conversation, message = event.conversation, event.message
        with self._lock:
            chosen = self._current is None
            if chosen:
                self._current = conversation
            current = self._current.id if self._current else None
        sender = clean(message.sender)
        self._say(f"[{conversation.id}] {_clock(message.sent_at)} {sender}: {self._text(message)}")
        if chosen:
            self._say(f"(now writing to {clean(conversation.title)}; /to or /open to change)")
        if current == conversation.id:
            self._session.call(self._session.enclave.mark_read(conversation.id))
            self._controls_queued = True

    def _text(self, message: Message) -> str:
        files = self._session.call(self._session.enclave.attachments(message.id))
        attached = "".join(f" [file: {clean(f.name)}]" for f in files)
        return clean(message.body) + attached


def _words(words: list[str], count: int, usage: str) -> list[str]:
    if len(words) != count:
        raise CliError(f"usage: {usage}")
    return words


def _number(text: str) -> int:
    if not text.isdigit():
        raise CliError(f"{text!r} is not a whole number of seconds or messages")
    return int(text)


def _clock(seconds: float) -> str:
    return time.strftime("%H:%M", time.localtime(seconds))
