"""The store's typed errors, each with a message the person at the workstation can act on.

Every failure to open a profile has its own class, so the UI can offer the right next
step (ask the passphrase again, unlock the keystore, restore from backup) without
parsing text. None of them is raised after a file of the profile was changed: a failed
open leaves the folder exactly as it found it.
"""

from __future__ import annotations

import errno

from app.base.errors import StorageError

_CAUSES = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "the disk holding it is full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "it is a folder, not a file",
    errno.ENOTDIR: "a file stands where a folder should be",
    errno.EIO: "input/output error (a failing disk or a lost network share)",
}

_WRITE_ERRORS = frozenset({errno.EROFS, errno.ENOSPC, errno.EDQUOT})


class KeystoreError(StorageError):
    """The operating system's keystore could not give us the profile's key."""


class KeystoreUnavailableError(KeystoreError):
    """No keystore backend exists on this machine, or it did not answer."""

    def __init__(self, detail: str = "") -> None:
        super().__init__(
            "No system keystore is available (Secret Service, Keychain or Credential Manager). "
            "Start it, or protect this profile with a passphrase instead."
            + (f" ({detail})" if detail else "")
        )


class KeystoreLockedError(KeystoreError):
    """The keystore holds the key but is locked."""

    def __init__(self) -> None:
        super().__init__(
            "The system keystore is locked. Unlock it (log in again or open the keyring) and retry."
        )


class KeystoreEntryMissingError(KeystoreError):
    """The keystore works, but the profile's key is not in it."""

    def __init__(self, profile_id: str) -> None:
        self.profile_id = profile_id
        super().__init__(
            f"The key of profile {profile_id} is not in the system keystore (it was deleted, or this profile "
            "was copied from another account or machine). The messages cannot be read without it; "
            "restore the keystore entry or enrol this device again."
        )


class KeystoreEntryCorruptError(KeystoreError):
    """The keystore has an entry for the profile, but it is not a key Enclave wrote."""

    def __init__(self, profile_id: str) -> None:
        self.profile_id = profile_id
        super().__init__(
            f"The keystore entry of profile {profile_id} is damaged or was replaced. "
            "Restore it from a backup of the keystore or enrol this device again."
        )


class WrongKeyError(StorageError):
    """The key we hold does not open this profile (it belongs to another profile or installation)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(
            message
            or "The key in the system keystore does not open this profile; it belongs to another profile "
            "or installation. Restore the right keystore entry or enrol this device again."
        )


class WrongPassphraseError(WrongKeyError):
    """The passphrase typed does not open this profile."""

    def __init__(self) -> None:
        super().__init__("Wrong passphrase. Check the keyboard layout and Caps Lock, then try again.")


class ProtectionMismatchError(StorageError):
    """The profile is protected differently from what the caller offered (a programming error)."""

    def __init__(self, expected: str, offered: str) -> None:
        self.expected = expected
        self.offered = offered
        super().__init__(f"This profile is protected by {expected}, not by {offered}.")


class NotAnEnclaveDatabaseError(StorageError):
    """The folder or file is not an Enclave profile, or it was replaced or damaged."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"This is not an Enclave message store ({reason}). Choose the right profile folder "
            "or restore it from a backup; nothing was changed."
        )


class UnsupportedProfileVersionError(StorageError):
    """The profile was written by a newer Enclave than this one."""

    def __init__(self, what: str, version: int, latest: int) -> None:
        self.version = version
        self.latest = latest
        super().__init__(
            f"This profile's {what} is version {version}, but this Enclave reads up to version {latest}. "
            "Update Enclave to open it."
        )


class ProfileExistsError(StorageError):
    """A profile was to be created where one already exists."""

    def __init__(self, where: str) -> None:
        super().__init__(f"A profile already exists in {where}; open it instead of creating a new one.")


class ProfileInUseError(StorageError):
    """Another open store holds the profile: another program, or this one, has it open already.

    ``pid`` and ``program`` name the holder as its lock file says (``storage.profilelock``);
    both are None while the holder has not written them yet, or wrote what this build
    cannot read.
    """

    def __init__(self, where: str, pid: int | None = None, program: str | None = None) -> None:
        self.pid = pid
        self.program = program
        who = f"{program} (pid {pid})" if program is not None else "another program"
        super().__init__(f"The profile in {where} is open in {who}; close it first, then try again.")


class DatabaseCorruptError(StorageError):
    """SQLite found damage inside a database it could decrypt."""

    def __init__(self) -> None:
        super().__init__("The message store is damaged. Restore the profile from a backup.")


class NotFoundError(StorageError):
    """A record the caller named does not exist (it may have expired meanwhile)."""


class InvalidTransitionError(StorageError):
    """A record was asked to move to a state it may not reach from its current one."""


class AttachmentError(StorageError):
    """An attachment file could not be stored or read."""


class AttachmentCorruptError(AttachmentError):
    """An attachment file was altered or truncated on disk."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"The attachment file is damaged ({reason}); it cannot be opened. Ask for it again.")


class AttachmentMissingError(AttachmentError):
    """An attachment's file is gone from the profile folder."""

    def __init__(self) -> None:
        super().__init__("The attachment's file is missing from the profile folder. Ask for it again.")


class AttachmentTooLargeError(AttachmentError):
    """An attachment is larger than Enclave stores."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"The file is larger than the {limit // (1024 * 1024)} MiB Enclave can store.")


class WrongThreadError(StorageError):
    """A store was used from a thread other than the one that opened it (a programming error)."""

    def __init__(self) -> None:
        super().__init__("The store belongs to the thread that opened it; call it from that thread only.")


class ProfileFileError(StorageError):
    """A file of the profile could not be read or written for a reason outside Enclave: a
    read-only or full disk, missing permissions, a folder where a file should be. The data
    and the key are not at fault; the message names the file and the cause, never
    "not an Enclave store", so nobody replaces good data because of it."""

    def __init__(self, action: str, path: object, cause: str) -> None:
        self.path = str(path)
        self.cause = cause
        super().__init__(
            f"Cannot {action} {self.path}: {cause}. Your messages and key are not damaged; "
            "fix this (free space, a writable or readable folder, the right permissions) and try again."
        )

    @classmethod
    def from_os(cls, path: object, error: OSError) -> ProfileFileError:
        """From an ``OSError``; ``path`` is used when the error names none."""
        code = error.errno or 0
        cause = _CAUSES.get(code, error.strerror or type(error).__name__)
        action = "write to" if code in _WRITE_ERRORS else "open"
        return cls(action, error.filename if error.filename is not None else path, cause)


class StoreFullError(ProfileFileError):
    """The disk holding the profile is full; nothing of the failed write was kept."""

    def __init__(self, path: object = "the message store") -> None:
        super().__init__("write to", path, "the disk holding it is full")


class KeyHeaderMissingError(StorageError):
    """The profile's database is there but its key header is gone: the key cannot be found."""

    def __init__(self, header: object, database: object) -> None:
        self.header = str(header)
        super().__init__(
            f"The key header {header} is missing, but the profile's database {database} is still there. "
            "Without the key header the messages cannot be unlocked: restore it from a backup. "
            "Do not enrol again in this folder; that would not bring the messages back."
        )


class KeyHeaderDamagedError(StorageError):
    """The key header's checksum does not match: bytes of it changed on disk. Not a wrong passphrase."""

    def __init__(self, header: object) -> None:
        self.header = str(header)
        super().__init__(
            f"The key header {header} is damaged (its checksum does not match), so the key cannot be "
            "found; your passphrase is not at fault. Restore the key header from a backup."
        )
