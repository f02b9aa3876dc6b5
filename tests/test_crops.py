import numpy as np

from leukoscan.crops import crop_cells, square_boxes


def test_square_boxes_are_square_and_centred():
    sq = square_boxes(np.array([[10, 20, 30, 60]]), margin=0.25)
    w, h = sq[0, 2] - sq[0, 0], sq[0, 3] - sq[0, 1]
    assert w == h == 40 * 1.5
    assert np.allclose((sq[0, :2] + sq[0, 2:]) / 2, [20, 40])


def test_crop_at_borders_is_padded_with_field_colour():
    img = np.full((100, 100, 3), 200, np.uint8)
    img[0:20, 0:20] = (120, 60, 170)  # a cell in the corner
    crops = crop_cells(img, np.array([[0, 0, 20, 20], [90, 90, 100, 100]]), size=32, margin=0.25)
    assert crops.shape == (2, 32, 32, 3) and crops.dtype == np.uint8
    # the part outside the image is filled with the median (background) colour, the cell stays centred
    assert (crops[0, 0, 0] == 200).all()
    assert (crops[0, 16, 16] == (120, 60, 170)).all()


def test_tiny_and_empty_boxes():
    img = np.zeros((50, 50, 3), np.uint8)
    assert crop_cells(img, np.array([[10, 10, 10, 10]]), size=16).shape == (1, 16, 16, 3)
    assert crop_cells(img, np.zeros((0, 4)), size=16).shape == (0, 16, 16, 3)
    assert crop_cells(img, np.array([[-30, -30, -20, -20]]), size=16).shape == (1, 16, 16, 3)


def test_a_box_at_the_edge_pads_its_crop_not_the_field():
    import tracemalloc

    img = np.full((3000, 4000, 3), 200, np.uint8)  # a 36 MB photograph
    img[2900:, 3900:] = (120, 60, 170)
    tracemalloc.start()
    crops = crop_cells(img, np.array([[3900, 2900, 4000, 3000]]), size=64, margin=0.5)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000  # the old whole-field padding copied ~37 MB here
    assert (crops[0, 32, 32] == (120, 60, 170)).all() and (crops[0, 0, 0] == 200).all()
