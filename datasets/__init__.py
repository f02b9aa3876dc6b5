"""Dataset builders: leak-free Taleqani splits, detection (YOLO) and classification (crop) datasets."""
