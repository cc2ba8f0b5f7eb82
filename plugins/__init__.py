"""Built-in hookcast plugins.

Each module here is a plugin: functions decorated with ``core.hookimpl``. They use
only what ``core`` exports, exactly what a third-party plugin gets, so any of them
can be disabled (``disabled_plugins=echo_app``) and replaced by a drop-in.
This folder is also the home's drop-in folder when the checkout is the server home.
"""
