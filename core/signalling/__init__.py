"""The WCS WebSocket protocol: the server's sessions and a Python client."""
