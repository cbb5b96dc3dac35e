"""The floor every layer stands on: the error hierarchy, the size limits, the byte codec.

DESIGN.md's layout table has no shared floor; we add this one on purpose. One root
``EnclaveError`` and one module of ``MAX_*`` limits (STYLE.md points 4 and 5) must be
importable from every layer, including ``storage/`` and ``server/``, which may import
nothing else of ``app``. This package therefore imports nothing from the project, and
the import-linter contracts in pyproject.toml keep it that way.
"""
