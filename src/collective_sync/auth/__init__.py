"""Identity: JWT verification (the app's Supabase-issued tokens)."""

from .verifier import AuthConfig, Identity, UnknownKey, Verifier

__all__ = ["AuthConfig", "Identity", "UnknownKey", "Verifier"]
