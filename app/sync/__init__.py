"""The connection to the domestic relay: a sans-I/O state machine and its asyncio driver."""
