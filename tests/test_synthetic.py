"""Synthetic data generator and the demo project."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mcp_core.io import list_images, open_image
from mcp_core.labels import load_labels_for
from mcp_core.synthetic import make_sample, write_demo_project


def test_reproducible_and_seed_dependent():
    a_img, a_lab = make_sample(3, shape=(96, 96))
    b_img, b_lab = make_sample(3, shape=(96, 96))
    c_img, _ = make_sample(4, shape=(96, 96))
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab.masks, b_lab.masks)
    assert not np.array_equal(a_img, c_img)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_classes_shapes_and_touching_objects(n_classes):
    img, lab = make_sample(0, shape=(256, 256), n_classes=n_classes, n_channels=3)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint16
    assert lab.class_names[0] == "unassigned" and len(lab.class_names) == n_classes + 1
    present = set(lab.classes[lab.ids].tolist())
    assert present == set(range(1, n_classes + 1))
    # every object is one connected piece with ids 1..n
    assert lab.ids.tolist() == list(range(1, lab.count + 1))
    for obj, box in enumerate(ndimage.find_objects(lab.masks), 1):
        assert ndimage.label(lab.masks[box] == obj)[1] == 1
    # some objects touch another object
    dil = ndimage.grey_dilation(lab.masks, size=3)
    assert np.any((lab.masks > 0) & (dil != lab.masks))
    # class 1 is brighter in channel 0 than class 2, and the reverse in channel 1
    cmap = lab.class_map()
    m = [[img[..., c][cmap == k].mean() for k in (1, 2)] for c in (0, 1)]
    assert m[0][0] > m[0][1] and m[1][1] > m[1][0]


def test_demo_project(tmp_path):
    write_demo_project(tmp_path, n_images=4, n_labelled=2, shape=(96, 96))
    images = list_images(tmp_path)
    assert [p.name for p in images] == [f"demo_{i:02d}.tif" for i in range(1, 5)]
    with open_image(images[0]) as src:
        assert src.read().shape == (96, 96, 2)
    assert [load_labels_for(p) is not None for p in images] == [True, True, False, False]
    assert load_labels_for(images[0]).classes.max() == 2
