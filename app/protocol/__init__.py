"""Wire formats: envelopes, content and control messages, their strict parsers."""
