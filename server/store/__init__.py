"""The relay's storage: one interface, a SQLite and a PostgreSQL backend.

What a seizure of either would find is exactly DESIGN.md's "server data model":
accounts, devices with their public keys, hashed enrolment codes, mailboxes of opaque
envelopes (recipient device, envelope id, bytes, expiry), attachments (opaque bytes,
expiry) and the admin log. No sender, no conversation, no IP address.
"""
