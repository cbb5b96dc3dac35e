"""The enrolment authority: a separate program (``enclave-authority``) that certifies new
devices with enrolment codes and renews their certificates, signing with the authority
key the organisation config names.

It exists so that the relay holds no key a client accepts for a certificate (issue 12,
docs/PROTOCOL.md §14): whoever holds the relay's data folder must not be able to certify
a key of its choosing for a colleague. So the authority shares no process, no data and no
imports with the relay. It runs as its own service user with its own data folder (never
the relay's: a deliberate addition to DESIGN.md's layout), reads its key from the sealed
key file ``enclave-admin org init`` wrote, and imports only ``app.base``, the certificate,
key and primitive modules of ``app.crypto``, ``app.protocol`` and
``app.provisioning.keyfile`` (pyproject.toml's import contracts hold both directions).

Status: the service exists and is tested on its own; clients and the relay do not use it
yet (issue 12's next step wires them to it).

- ``store``: the SQLite file of enrolment codes and device records;
- ``service``: the checks of a certify or renew request, sans-I/O;
- ``web``: the HTTP face (``POST /v1/certify``, ``POST /v1/renew``);
- ``main``: the program; ``admin``: ``enclave-admin authority code|revoke``.
"""
