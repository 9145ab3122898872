"""Package layout: one import namespace over folders that show the architecture.

``sw/unifab`` is ``unifab``, ``hdl/`` is ``unifab.hdl`` and ``tb/`` is ``unifab.tb``;
nothing generic such as a top-level ``hdl`` or ``tb`` lands in site-packages.
"""

from setuptools import find_packages, setup

ROOTS = {"unifab": "sw/unifab", "unifab.hdl": "hdl", "unifab.tb": "tb"}

packages: list[str] = []
for name, path in ROOTS.items():
    packages.append(name)
    packages += [f"{name}.{sub}" for sub in find_packages(path)]

setup(packages=packages, package_dir=ROOTS)
