"""Development: see tools/__init__.py."""
