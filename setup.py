"""Package discovery for the renamed tree (the rest of the metadata is in pyproject.toml).

The repository keeps the design's top level: core/ is installed as the package
``hookcast`` and plugins/ as ``hookcast.plugins`` (``[tool.setuptools.package-dir]``).
setuptools' own discovery only knows folder names, so every subpackage of each tree is
found here, under its installed name; a new subpackage ships without editing a list.
Folders of data files (the console's templates/ and static/) are namespace packages to
Python, so they are found too (``find_namespace_packages``): their files are declared
in ``[tool.setuptools.package-data]`` and setuptools has nothing to warn about.
"""

from setuptools import find_namespace_packages, setup


def discover(package: str, folder: str) -> list[str]:
    found = find_namespace_packages(folder, exclude=["*__pycache__*"])
    importable = [sub for sub in found if all(part.isidentifier() for part in sub.split("."))]
    return [package, *(f"{package}.{sub}" for sub in importable)]


setup(packages=discover("hookcast", "core") + discover("hookcast.plugins", "plugins"))
