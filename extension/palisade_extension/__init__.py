"""Palisade."""
