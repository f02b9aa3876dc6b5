"""Dataset builders: leak-free Taleqani splits, detection (YOLO) and classification (crop) datasets."""

import leukoscan  # noqa: F401  (runtime set-up before anything imports ultralytics)
