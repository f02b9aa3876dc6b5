"""Stage two: Ultralytics YOLOv8n-cls classifiers of cell crops: the cell type (cross-lab) and the blast
subtype, calibrated."""
