"""Stage one: a YOLOv8 white-cell detector with scale normalisation and tiled inference."""
