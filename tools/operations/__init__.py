"""Operations: see tools/__init__.py."""
