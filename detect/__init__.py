"""Stage one: a YOLOv8 white-cell detector with scale normalisation and tiled inference."""

import leukoscan  # noqa: F401  (runtime set-up before ultralytics)
