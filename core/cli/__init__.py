"""The ``hookcast`` command line: serve, init, config, plugins, streams, terminate, apps,
pull, push, records, vod."""

from hookcast.cli.main import main

__all__ = ["main"]
