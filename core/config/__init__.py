"""Configuration: the server home, server.properties, apps.json and folder watching."""
