"""Build hook for procly's one optional C extension; every piece of metadata is in
pyproject.toml.

``procly._os._native`` (a futex lock, Linux only) is *optional*: where it cannot be built
(no compiler, another OS) the install still succeeds and procly uses its pure path.
"""

from __future__ import annotations

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):
    ext_modules.append(Extension("procly._os._native", ["src/procly/_os/_native.c"], optional=True))

setup(ext_modules=ext_modules)
