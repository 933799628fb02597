"""Fixtures shared across the suite (the local archive, servers, images)."""
