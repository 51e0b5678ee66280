"""The GAA engine's model: the shared state document and its merge rules."""
