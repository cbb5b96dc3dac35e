"""End-to-end cryptography: X3DH, the Double Ratchet, sealed envelopes, safety numbers.

Pure functions and small state objects: bytes in, bytes out, no I/O, no clock (a
``now`` is passed in), and randomness only through an injected ``RandomSource``.
"""
