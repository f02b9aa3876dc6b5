"""Stage two: an Ultralytics YOLOv8n-cls cell-crop classifier (Benign, Early Pre-B, Pre-B, Pro-B), calibrated."""

import leukoscan  # noqa: F401  (runtime set-up before ultralytics)
