"""Collective Sync: real-time synchronisation for collective generative-audio sessions."""

__version__ = "0.1.0"
