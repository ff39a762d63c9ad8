"""Package discovery, so that no module can be left out of the wheel: every folder of Python files under
`lse_engine/`, `server/lse_server/` and `examples/` (installed as `lse_examples`). A subfolder needs no
`__init__.py` to be found. Everything else about the distribution is in pyproject.toml; setuptools reads
this file because pyproject's `packages.find` cannot install a folder under another name (examples ->
lse_examples). tests/test_packaging.py builds the wheel and checks that it holds every tracked file.
"""

from setuptools import find_namespace_packages, setup

ROOTS = {"lse_engine": "lse_engine", "lse_server": "server/lse_server", "lse_examples": "examples"}


def packages_under(name: str, folder: str) -> list[str]:
    """`name` (the package in `folder`) and every package folder below it, caches and hidden folders left out."""
    found = find_namespace_packages(folder, exclude=["*__pycache__*", "*.egg-info*", "build*", "dist*"])
    return [name, *(f"{name}.{sub}" for sub in found)]


setup(
    packages=[pkg for name, folder in ROOTS.items() for pkg in packages_under(name, folder)],
    package_dir=ROOTS,
)
