"""Thin DVC stage entry points: read a params section, call the library, write outputs."""
