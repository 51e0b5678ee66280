"""A Supabase Realtime-compatible endpoint: the Phoenix channel protocol mapped onto sessions."""
