"""The media engine: streams, broadcasts, their sources and sinks, keep-alive, metrics."""
