"""``enclave-cli`` and the local workspace: a headless face over the ``app.services`` facade (no Qt)."""
