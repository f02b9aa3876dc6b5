"""leukoscan: the shared core (settings, the cell data type, image loading, crop geometry, a slide's run) and,
under this one namespace, the stages kept in the repository's top-level folders: ``leukoscan.detect``
(``detect/``), ``leukoscan.classify`` (``classify/``), ``leukoscan.datasets`` (``datasets/``) and the command
line ``leukoscan.pipeline`` (``pipeline.py``). Importing it changes nothing in the process: entry points call
``leukoscan.runtime.setup()`` (and ``runtime.ultralytics()``, the only importer of Ultralytics, calls it too).
"""

__version__ = "0.1.0"
DISCLAIMER = "leukoscan is a screening aid that flags slides for review by a hematologist. It is not a diagnosis."
