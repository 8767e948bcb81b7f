"""Delivery: see tools/__init__.py."""
