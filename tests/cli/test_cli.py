"""``enclave-cli`` as scripts and admins use it: real processes, a real relay, passphrase profiles."""

from __future__ import annotations

import os
from pathlib import Path

from authority.service import CODE_REFUSED
from tests.cli.conftest import Pair
from tests.support.cli import (
    RUN_SECONDS,
    CliUser,
    Interactive,
    enrol,
    enrol_user,
    import_organisation,
    pairs,
    passphrase_file,
    rows,
)
from tests.support.deployment import deployment
from tests.support.relay import RelayProcess, admin, new_account

LISTEN = ("listen", "--count", "1", "--wait", "60")
TAKEN = ("sent", "delivered")
"""What ``send`` prints once the relay has the message: a listening colleague's receipt may beat "sent"."""


def exchange(sender: CliUser, recipient: CliUser, text: str) -> list[str]:
    """``send`` a text while the recipient's ``listen`` runs; the listen's one item."""
    listening = recipient.start(*LISTEN)
    sent = sender.run("send", recipient.account_id, text)
    out, err = listening.communicate(timeout=RUN_SECONDS)
    assert sent.returncode == 0 and pairs(sent.stdout)["status"] in TAKEN, sent.stderr
    assert listening.returncode == 0, err
    [item] = rows(out)
    return item


def test_enrol_prints_the_account_and_its_device(pair: Pair) -> None:
    """Test that enrol prints the account id and a device id, as key: value lines."""
    for account_id, done in pair.enrolments.items():
        printed = pairs(done.stdout)
        assert printed["account"] == account_id and printed["device"].isdigit()


def test_contacts_search_adds_colleagues_from_the_directory(pair: Pair) -> None:
    """Test that --search prints and adds the directory's matches, which contacts then lists."""
    found = pair.alice.run("contacts", "--search", "Baker")
    assert found.returncode == 0, found.stderr
    assert rows(found.stdout) == [["bob", "Bob Baker", "Tests"]]
    assert ["bob", "Bob Baker", "Tests"] in rows(pair.alice.run("contacts").stdout)


def test_a_sent_text_is_printed_by_listen_and_kept_in_history(pair: Pair) -> None:
    """Test that send reports sent, the listener prints one line for it, and history shows it last."""
    conversation, sender, sent_at, body, file_name = exchange(pair.alice, pair.bob, "Draft\tready\nsee p. 2")
    assert (sender, body, file_name) == ("alice", "Draft\\tready\\nsee p. 2", "")
    assert conversation.isdigit() and sent_at.endswith("Z")

    history = pair.alice.run("history", "bob", "--limit", "1")
    [[_, _, author, status, text, _]] = rows(history.stdout)
    assert (author, text) == ("alice", "Draft\\tready\\nsee p. 2")
    assert status in ("sent", "delivered", "read")


def test_a_file_is_saved_by_listen_byte_for_byte(pair: Pair, tmp_path: Path) -> None:
    """Test that send-file delivers a file that listen --save-files writes out identical."""
    report = tmp_path / "report.pdf"
    report.write_bytes(os.urandom(200_000))
    sent = pair.alice.run("send-file", "bob", str(report), "--caption", "for review")
    assert sent.returncode == 0 and pairs(sent.stdout)["status"] == "sent", sent.stderr

    listened = pair.bob.run(*LISTEN, "--save-files", str(tmp_path / "saved"))
    assert listened.returncode == 0, listened.stderr
    [[_, sender, _, caption, file_name]] = rows(listened.stdout)
    assert (sender, caption, file_name) == ("alice", "for review", "report.pdf")
    assert (tmp_path / "saved" / "report.pdf").read_bytes() == report.read_bytes()

    missing = pair.alice.run("send-file", "bob", str(tmp_path / "no-such.pdf"))
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "cannot read" in missing.stderr


def test_listen_prints_every_message_it_takes_from_the_relay(pair: Pair) -> None:
    """Test that three queued messages are each printed once by listen --count 1, none taken unprinted."""
    texts = ["Queued one", "Queued two", "Queued three"]
    for text in texts:
        sent = pair.alice.run("send", "bob", text)
        assert sent.returncode == 0 and pairs(sent.stdout)["status"] == "sent", sent.stderr

    printed: list[str] = []
    for _ in texts:  # every run prints at least the one it waits for
        listened = pair.bob.run(*LISTEN)
        assert listened.returncode == 0, listened.stderr
        printed += [body for _, _, _, body, _ in rows(listened.stdout)]
        if len(printed) >= len(texts):
            break
    assert printed == texts

    history = pair.bob.run("history", "alice", "--limit", "3")
    assert [text for _, _, _, _, text, _ in rows(history.stdout)] == texts


def test_a_second_process_on_a_profile_is_refused_and_the_first_keeps_working(pair: Pair) -> None:
    """Test that send on a profile that listen has open exits 1 naming it, and listen still gets messages."""
    listening = Interactive(pair.bob.command(*LISTEN), {})
    try:
        listening.expect("connection: online")
        second = pair.bob.run("send", "alice", "Am I open twice?")
        assert second.returncode == 1 and second.stdout == "", second.stderr
        [line] = second.stderr.splitlines()
        assert f"is open in enclave-cli listen (pid {listening.process.pid}); close it first" in line

        sent = pair.alice.run("send", "bob", "Still listening?")
        assert sent.returncode == 0 and pairs(sent.stdout)["status"] in TAKEN, sent.stderr
        [_, sender, _, body, _] = listening.expect("Still listening?").rstrip("\n").split("\t")
        assert (sender, body) == ("alice", "Still listening?")
        assert listening.finish() == 0
    finally:
        listening.stop()
    again = pair.bob.run("contacts")
    assert again.returncode == 0, again.stderr


def test_timer_and_secret_chat_reach_the_colleague(pair: Pair, tmp_path: Path) -> None:
    """Test that a timer change and a secret chat arrive, and a secret chat's file is not saved."""
    timer = pair.alice.run("timer", "bob", "3600")
    assert timer.returncode == 0 and pairs(timer.stdout)["timer"] == "3600", timer.stderr
    secret = pair.alice.run("secret", "bob", "--timer", "60")
    assert secret.returncode == 0, secret.stderr
    chat_id = pairs(secret.stdout)["conversation"]
    note = tmp_path / "note.txt"
    note.write_text("for your eyes only")
    sent = pair.alice.run("send-file", "--conversation", chat_id, str(note))
    assert sent.returncode == 0 and pairs(sent.stdout)["status"] == "sent", sent.stderr

    listened = pair.bob.run(*LISTEN, "--save-files", str(tmp_path / "saved"))
    assert listened.returncode == 0, listened.stderr
    assert "set to 3600 s by the colleague" in listened.stderr
    assert "not saved: note.txt is in a secret chat" in listened.stderr
    assert not list((tmp_path / "saved").iterdir())
    kinds = {(kind, peer, timer) for _, kind, peer, timer, *_ in rows(pair.bob.run("conversations").stdout)}
    assert {("direct", "alice", "3600"), ("secret", "alice", "60")} <= kinds


def test_safety_numbers_are_the_same_on_both_sides_and_can_be_verified(pair: Pair) -> None:
    """Test that both sides print the same digits in groups of five, and --verify marks the device."""
    exchange(pair.bob, pair.alice, "Shall we compare numbers?")
    theirs = pair.alice.start("safety-number", "bob")
    [[alice_device, digits, trust]] = rows(pair.bob.run("safety-number", "alice").stdout)
    [[_, their_digits, _]] = rows(theirs.communicate(timeout=RUN_SECONDS)[0])
    assert digits == their_digits and trust == "unverified"
    groups = digits.split(" ")
    assert len(groups) == 12 and all(len(g) == 5 and g.isdigit() for g in groups)

    verified = pair.bob.run("safety-number", "alice", "--verify", alice_device)
    assert rows(verified.stdout) == [[alice_device, digits, "verified"]]


def test_a_wrong_passphrase_exits_1_with_one_line(pair: Pair, tmp_path: Path) -> None:
    """Test that a wrong passphrase fails with status 1 and one line on stderr, no traceback."""
    wrong = CliUser("alice", pair.alice.profile, passphrase_file(tmp_path, "not the passphrase"))
    done = wrong.run("contacts")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("enclave-cli: Wrong passphrase") and done.stderr.count("\n") == 1


def test_a_refused_code_exits_1_with_the_authoritys_reason(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that enrol with a code the enrolment authority refuses fails with status 1 and, in one
    line, the authority's reason."""
    carol = CliUser("carol", tmp_path / "carol", passphrase_file(tmp_path))
    import_organisation(relay, carol)
    done = carol.run("enrol", "--code", "AAAA-BBBB-CCCC-DDDD")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and CODE_REFUSED in done.stderr, done.stderr


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    """Test that a command missing its arguments exits 2 with its usage, before opening any profile."""
    done = CliUser("x", tmp_path / "none", tmp_path / "none.txt").run("send", "--conversation", "1")
    assert done.returncode == 2
    assert "usage: enclave-cli send (ACCOUNT | --conversation ID) TEXT" in done.stderr


def test_a_profile_whose_key_header_is_gone_is_not_enrolled_over(relay: RelayProcess, tmp_path: Path) -> None:
    """Test that enrol and history refuse a profile missing its key header and keep its database."""
    user = CliUser("carol", tmp_path / "carol", passphrase_file(tmp_path))
    enrol(relay, user, new_account(relay.data_dir, "carol", "Carol Clark"))
    (user.profile / "keyheader").unlink()
    database = (user.profile / "store.db").read_bytes()
    again = deployment().code(new_account(relay.data_dir, "carol2", "Carol Clark"))
    for args in (("enrol", "--code", again), ("history", "bob")):
        done = user.run(*args)
        assert done.returncode == 1, done.stderr
        assert "key header" in done.stderr and "is missing" in done.stderr
        assert "Traceback" not in done.stderr
    assert not (user.profile / "keyheader").exists()
    assert (user.profile / "store.db").read_bytes() == database


def test_a_device_added_to_the_account_is_told_at_once_and_devices_lists_it(
    relay: RelayProcess, pair: Pair, tmp_path: Path
) -> None:
    """Test that while ``listen`` runs, a second device enrolled for the account is told at once on
    stderr (when it was added, and to tell security), and that ``devices`` lists the account's
    devices as the key log states them, this one marked."""
    dmitri = CliUser("dmitri", tmp_path / "dmitri", pair.alice.passphrase)
    assert enrol_user(relay, dmitri, "Dmitri Orlov").returncode == 0
    listed = dmitri.run("devices")
    assert listed.returncode == 0, listed.stderr
    [[own, _, revoked, mark]] = rows(listed.stdout)  # this device, as the key log has it
    assert (revoked, mark) == ("", "this device") and "key log: " in listed.stderr

    listening = Interactive(dmitri.command("listen", "--wait", "60"), {})
    try:
        listening.expect("connection: online")
        laptop = enrol(relay, CliUser("dmitri", tmp_path / "laptop", pair.alice.passphrase))
        warning = listening.expect("security: ")
        assert f"a new device (device {laptop}) was added to your account on " in warning
        assert "if this was not you, tell security" in warning
    finally:
        listening.stop()

    kept = tmp_path / "kept-head"
    listed = dmitri.run("devices", "--save-head", str(kept))
    assert [(row[0], row[3]) for row in rows(listed.stdout)] == [(own, "this device"), (str(laptop), "")]
    verified = admin(relay.data_dir, "log", "verify", "--head", str(kept))
    assert verified.returncode == 0 and "extends the head" in verified.stdout, verified.stderr
