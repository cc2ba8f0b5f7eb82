"""Package discovery for the renamed tree (the rest of the metadata is in pyproject.toml).

The repository keeps the design's top level: core/ is installed as the package
``hookcast`` and plugins/ as ``hookcast.plugins`` (``[tool.setuptools.package-dir]``).
setuptools' own discovery only knows folder names, so every subpackage of each tree is
found here, under its installed name; a new subpackage ships without editing a list.
"""

from setuptools import find_packages, setup


def discover(package: str, folder: str) -> list[str]:
    return [package, *(f"{package}.{sub}" for sub in find_packages(folder))]


setup(packages=discover("hookcast", "core") + discover("hookcast.plugins", "plugins"))
