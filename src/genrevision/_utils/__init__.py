"""Plumbing shared by every layer of genrevision: file handling, worker pools, content
hashes, progress bars and parameter validation. Nothing here knows about genres; nothing
here is public API (names may change between versions)."""
