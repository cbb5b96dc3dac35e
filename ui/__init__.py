"""The PySide6 desktop client: widgets that render what the services facade reports."""
