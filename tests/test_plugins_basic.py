"""Basic stats on small literal arrays with answers worked out by hand, and against regionprops on real data."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import regionprops_table

from mcp_core.measure import FrameData, measure_labels
from mcp_plugins import basic


def run(labels, image=None, **params):
    labels = np.asarray(labels)
    image = np.zeros(labels.shape) if image is None else image
    data = FrameData.build(labels, image)
    return basic.compute(data, basic.BasicParams(**params)), data


@pytest.mark.parametrize(
    "labels,area,perimeter,centroid,bbox",
    [
        # a single pixel: no boundary length by regionprops' rule
        ([[0, 0, 0], [0, 1, 0], [0, 0, 0]], 1, 0.0, (1.0, 1.0), (1, 1, 2, 2)),
        # a 3x3 square: eight border pixels, each a straight run -> 8
        (np.pad(np.ones((3, 3), int), 1), 9, 8.0, (2.0, 2.0), (1, 1, 4, 4)),
        # a 1x3 bar at the image edge: the ends (one border neighbour, code 3) weigh 0, the middle
        # (two straight border neighbours, code 5) weighs 1 -> 1, as regionprops says
        ([[1, 1, 1], [0, 0, 0]], 3, 1.0, (0.0, 1.0), (0, 0, 1, 3)),
    ],
)
def test_size_position_box(labels, area, perimeter, centroid, bbox):
    out, _ = run(labels)
    assert out["area"].tolist() == [area]
    assert out["perimeter"][0] == pytest.approx(perimeter)
    assert (out["centroid_y"][0], out["centroid_x"][0]) == pytest.approx(centroid)
    assert [out[k][0] for k in ("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")] == list(bbox)


def test_shape_descriptors_by_hand():
    # ids 1: horizontal 1x3 bar; 2: L of three pixels; 3: 3x3 square
    labels = np.zeros((9, 9), int)
    labels[0, 0:3] = 1
    labels[3, 0] = labels[3, 1] = labels[4, 0] = 2
    labels[5:8, 5:8] = 3
    out, _ = run(labels)
    # bar: var(x) = 2/3, var(y) = 0 -> eccentricity 1, major axis 4*sqrt(2/3), minor 0
    assert out["eccentricity"][0] == pytest.approx(1.0)
    assert out["major_axis_length"][0] == pytest.approx(4 * np.sqrt(2 / 3))
    assert out["minor_axis_length"][0] == pytest.approx(0.0)
    # the bar's pixel squares are convex: solidity 1; the L's hull cuts one half-square corner: 3 / 3.5
    assert out["solidity"][0] == pytest.approx(1.0)
    assert out["solidity"][1] == pytest.approx(3 / 3.5)
    assert out["solidity"][2] == pytest.approx(1.0)
    # square: circle-like covariance -> eccentricity 0; circularity 4*pi*9/8^2
    assert out["eccentricity"][2] == pytest.approx(0.0)
    assert out["circularity"][2] == pytest.approx(4 * np.pi * 9 / 64)


def test_solidity_matches_qhull_on_random_shapes():
    """Objects of scattered pixels (disconnected, ragged rows) against scipy's ConvexHull of their pixel squares."""
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(4)
    labels = np.zeros((40, 60), int)
    for k in range(6):
        y, x = rng.integers(0, 30), rng.integers(0, 50)
        spot = rng.random((10, 10)) < 0.3
        labels[y:y + 10, x:x + 10][spot & (labels[y:y + 10, x:x + 10] == 0)] = k + 1
    out, data = run(labels)
    for i, solidity in zip(data.ids, out["solidity"]):
        ys, xs = np.nonzero(labels == i)
        corners = np.concatenate([np.column_stack([ys + dy, xs + dx]) for dy in (-.5, .5) for dx in (-.5, .5)])
        assert solidity == pytest.approx(len(ys) / ConvexHull(corners).volume, rel=1e-12)


def test_boxes_and_perimeters_match_regionprops_on_touching_random_shapes():
    """Ragged objects that touch each other and the image edge, against regionprops object by object."""
    rng = np.random.default_rng(7)
    labels = rng.integers(1, 12, (30, 45)) * (rng.random((30, 45)) < 0.7)
    labels[:, 20:23] = 12  # a bar across the frame, touching everything
    out, data = run(labels)
    ref = regionprops_table(labels, properties=("label", "bbox", "perimeter"))
    np.testing.assert_array_equal(data.ids, ref["label"])
    for k, name in enumerate(("bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1")):
        np.testing.assert_array_equal(out[name], ref[f"bbox-{k}"])
    np.testing.assert_allclose(out["perimeter"], ref["perimeter"], rtol=1e-12)


def test_single_pixel_circularity_is_nan():
    out, _ = run([[0, 1]])
    assert np.isnan(out["circularity"][0])
    assert out["eccentricity"][0] == 0.0


def test_intensities_by_hand():
    labels = np.array([[1, 1, 0, 2],
                       [1, 1, 0, 2]])
    image = np.zeros((2, 4, 2))
    image[..., 0] = [[1, 2, 9, 10], [3, 10, 9, 20]]
    image[..., 1] = [[0, 0, 5, 1], [0, 4, 5, 1]]
    out, _ = run(labels, image)
    assert out["mean_c0"].tolist() == [4.0, 15.0]
    assert out["median_c0"].tolist() == [2.5, 15.0]
    assert out["integrated_c0"].tolist() == [16.0, 30.0]
    assert out["mean_c1"].tolist() == [1.0, 1.0]
    assert out["median_c1"].tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    "gap,width,percentile,expected",
    [
        (0, 1, 50, 2.5),    # d = 1: the four neighbours 1, 2, 3, 4 -> median 2.5
        (0, 1, 0, 1.0),     # the lowest of them
        (0, 2, 50, 6.5),    # d <= 2 adds the diagonals 5..8 (d = 1.41) and four 100s (d = 2): median (6 + 7) / 2
        (0, 2, 100, 100.0),
        (1, 1, 50, 54.0),   # 1 < d <= 2: 5, 6, 7, 8 and four 100s -> (8 + 100) / 2
    ],
)
def test_annulus_background(gap, width, percentile, expected):
    labels = np.zeros((7, 7), int)
    labels[3, 3] = 1
    image = np.zeros((7, 7))
    image[2, 3], image[4, 3], image[3, 2], image[3, 4] = 1, 2, 3, 4
    image[2, 2], image[2, 4], image[4, 2], image[4, 4] = 5, 6, 7, 8
    image[1, 3] = image[5, 3] = image[3, 1] = image[3, 5] = 100
    image[3, 3] = 50
    out, _ = run(labels, image[..., None], annulus_gap=gap, annulus_width=width, background_percentile=percentile)
    assert out["background_c0"][0] == pytest.approx(expected)
    assert out["mean_bgsub_c0"][0] == pytest.approx(50 - expected)


def test_annulus_takes_background_only_split_between_neighbours():
    labels = np.array([[0, 1, 0, 0, 0, 2, 2, 0]])
    image = np.array([[10.0, 0, 20, 30, 40, 0, 99, 50]])
    out, _ = run(labels, image[..., None], annulus_gap=0, annulus_width=1)
    # d <= 1 from object 1: columns 0 and 2 -> median 15; object 2: columns 4 and 7 (its own pixel 6 is not
    # background) -> 45; column 3 is 2 away from both and in neither ring
    assert out["background_c0"].tolist() == [15.0, 45.0]
    out, _ = run(labels, image[..., None], annulus_gap=1, annulus_width=1)
    # 1 < d <= 2: only column 3, equidistant: it goes to exactly one of the two objects
    assert sorted(np.isnan(out["background_c0"]).tolist()) == [False, True]
    assert np.nanmax(out["background_c0"]) == 30.0


def test_no_annulus_pixels_gives_nan():
    out, _ = run(np.ones((3, 3), int), np.ones((3, 3, 1)))
    assert np.isnan(out["background_c0"][0]) and np.isnan(out["mean_bgsub_c0"][0])


def test_rows_follow_ids_with_gaps():
    labels = np.array([[0, 7, 7, 0, 3]])
    out, data = run(labels, np.array([[0, 1, 3, 0, 5.0]]))
    assert data.ids.tolist() == [3, 7]
    assert out["area"].tolist() == [1, 2]
    assert out["mean_c0"].tolist() == [5.0, 2.0]


def test_empty_frame_gives_no_rows():
    out, _ = run(np.zeros((4, 4), int), np.zeros((4, 4, 2)))
    assert all(len(v) == 0 for v in out.values())
    assert "mean_c1" in out


def test_agrees_with_regionprops_on_real_data(shared_fixtures):
    from skimage.filters import threshold_otsu
    from skimage.measure import label

    from mcp_core.io import open_image

    with open_image(shared_fixtures / "lif" / "testdata_2channel_xz.lif") as src:
        frames = [src.read(f) for f in src.frames[:3]]
    checked = 0
    for image in frames:
        for c in range(image.shape[-1]):
            labels = label(image[..., c] > threshold_otsu(image[..., c]))
            if labels.max() == 0:
                continue
            df = measure_labels(labels, image, ["basic"])
            ref = regionprops_table(labels, image, properties=("label", "area", "centroid", "intensity_mean",
                                                              "perimeter", "eccentricity", "bbox"))
            np.testing.assert_array_equal(df["mask_id"], ref["label"])
            np.testing.assert_array_equal(df["area"], ref["area"])
            np.testing.assert_allclose(df["centroid_y"], ref["centroid-0"], rtol=0, atol=1e-9)
            np.testing.assert_allclose(df["centroid_x"], ref["centroid-1"], rtol=0, atol=1e-9)
            for ch in range(image.shape[-1]):
                np.testing.assert_allclose(df[f"mean_c{ch}"], ref[f"intensity_mean-{ch}"], rtol=1e-12)
            np.testing.assert_allclose(df["perimeter"], ref["perimeter"], rtol=1e-12, atol=1e-9)
            np.testing.assert_allclose(df["eccentricity"], ref["eccentricity"], rtol=1e-9, atol=1e-9)
            np.testing.assert_array_equal(df["bbox_y1"], ref["bbox-2"])
            checked += len(df)
    assert checked > 20
