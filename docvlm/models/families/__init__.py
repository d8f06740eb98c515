"""One file per model family: its `FamilyAdapter` (registered by name in docvlm/models/registry.py)."""
