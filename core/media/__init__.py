"""Media files as sources: reading them for WebRTC, and the catalogue of media_dir."""
