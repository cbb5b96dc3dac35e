"""The use cases the UI and the CLI call, behind one facade."""
