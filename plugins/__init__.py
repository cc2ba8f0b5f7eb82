"""Built-in hookcast plugins.

Each module here is a plugin: functions decorated with ``hookcast.hookimpl``. They use
only what ``hookcast`` exports, exactly what a third-party plugin gets, so any of them
can be disabled (``disabled_plugins=echo_app``) and replaced by a drop-in. They are
declared as entry points of the ``hookcast`` group in pyproject.toml and loaded as any
installed package's plugins are. When the checkout is the server home this folder is
also its drop-in folder: the files of the declared modules are skipped there, any
other ``*.py`` is a drop-in.
"""
