"""The ``hookcast`` command line: serve, init, config, plugins, streams, apps."""

from hookcast.cli.main import main

__all__ = ["main"]
