"""Enclave's client core: crypto, wire formats, sync, services and provisioning."""
