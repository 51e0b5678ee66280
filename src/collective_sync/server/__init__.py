"""The session server: pure core (session, node, outbox) and thin I/O (WebSocket, HTTP)."""
