"""Shared core of leukoscan: runtime set-up, settings, the cell data type, image loading and crop geometry.

Importing this package sets up the offline, quiet, all-cores runtime (the environment at once, Ultralytics
the moment anything imports it), so every entry point (CLI, tests, scripts) imports ``leukoscan`` first.
"""

from leukoscan import runtime as _runtime

_runtime.setup()

__version__ = "0.1.0"
DISCLAIMER = (
    "leukoscan is a screening aid that flags slides for review by a hematologist. "
    "It is not a diagnosis."
)
