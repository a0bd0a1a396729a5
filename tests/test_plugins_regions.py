"""Perimeter-intensity bands, clusters and condensates on small literal arrays with hand-worked answers."""

from __future__ import annotations

import numpy as np
import pytest

from mcp_core.measure import FrameData, PluginError, measure_labels, run_labels
from mcp_plugins import basic, clusters, condensates, perimeter_intensity


def _square_scene():
    """A 5x5 object in a 9x9 image: edge ring 10, second ring 20, centre 30, the 4-connected ring outside 5."""
    labels = np.zeros((9, 9), int)
    labels[2:7, 2:7] = 1
    image = np.zeros((9, 9))
    image[2:7, 2:7] = 10
    image[3:6, 3:6] = 20
    image[4, 4] = 30
    image[1, 2:7] = image[7, 2:7] = image[2:7, 1] = image[2:7, 7] = 5
    return labels, image[..., None]


@pytest.mark.parametrize(
    "band,thickness,area,mean,interior_area,interior_mean",
    [
        ("inner", 1, 16, 10.0, 9, 190 / 9),                    # the 4-connected edge; inside: 8 x 20 and 30
        ("inner", 2, 24, (16 * 10 + 8 * 20) / 24, 1, 30.0),   # every pixel within 2 of the outside: all but the centre
        ("outer", 1, 20, 5.0, 25, 350 / 25),                   # the 4-connected ring outside (corners are sqrt(2) away)
        ("outer", 1.5, 24, 100 / 24, 25, 350 / 25),            # plus the four diagonal corners (value 0)
        ("symmetric", 1, 36, (160 + 100) / 36, 9, 190 / 9),
    ],
)
def test_band_area_and_mean(band, thickness, area, mean, interior_area, interior_mean):
    labels, image = _square_scene()
    data = FrameData.build(labels, image)
    out = perimeter_intensity.compute(data, perimeter_intensity.BandParams(band=band, thickness=thickness)).columns
    assert out["band_area"].tolist() == [area]
    assert out["band_mean_c0"][0] == pytest.approx(mean)
    object_mean = (16 * 10 + 8 * 20 + 30) / 25
    assert out["band_ratio_c0"][0] == pytest.approx(mean / object_mean)
    assert out["interior_area"].tolist() == [interior_area]
    assert out["interior_mean_c0"][0] == pytest.approx(interior_mean)
    assert out["perimeter_interior_ratio_c0"][0] == pytest.approx(mean / interior_mean)


def test_default_band_is_the_one_pixel_perimeter_with_background_and_overlay():
    labels, _ = _square_scene()
    image = np.where(labels > 0, 10.0, 7.0)
    image[4, 4] = 20.0  # the centre: interior mean (8 x 10 + 20) / 9
    result = perimeter_intensity.compute(FrameData.build(labels, image), perimeter_intensity.BandParams())
    out = result.columns
    assert out["band_area"].tolist() == [16] and out["interior_area"].tolist() == [9]
    assert out["band_bgsub_c0"].tolist() == [3.0]  # every annulus pixel is 7
    assert out["perimeter_interior_ratio_c0"][0] == pytest.approx(10 / (100 / 9))
    (layer,) = result.overlays()  # made only when asked for
    assert (layer.name, layer.kind, layer.ids.tolist()) == ("band", "labels", [1])
    assert (layer.data == 1).sum() == 16 and layer.data[3, 3] == 0 and layer.data[2, 2] == 1


def test_bands_of_touching_objects_stay_apart():
    labels = np.zeros((5, 8), int)
    labels[1:4, 1:4] = 1
    labels[1:4, 4:7] = 2
    image = np.where(labels == 1, 1.0, np.where(labels == 2, 2.0, 7.0))[..., None]
    data = FrameData.build(labels, image)
    inner = perimeter_intensity.compute(data, perimeter_intensity.BandParams(band="inner", thickness=1)).columns
    assert inner["band_area"].tolist() == [8, 8]  # the shared side is an edge of both
    assert inner["band_mean_c0"].tolist() == [1.0, 2.0]  # never the neighbour's pixels
    outer = perimeter_intensity.compute(data, perimeter_intensity.BandParams(band="outer", thickness=1)).columns
    assert outer["band_area"].tolist() == [9, 9]  # three sides of three pixels; the fourth side is the other object
    assert outer["band_mean_c0"].tolist() == [7.0, 7.0]
    review = perimeter_intensity.review(data, perimeter_intensity.BandParams(band="inner", thickness=1))
    assert (review == 1).sum() == 8 and review[2, 2] == 0


# ids: 1 and 2 (class 1) share 2 pixel edges; 3 (class 1) and 4 (class 2) share 2; 5 and 6 alone (class 1).
CLUSTER_LABELS = np.array([[1, 1, 2, 2, 0, 5],
                           [1, 1, 2, 2, 0, 0],
                           [0, 0, 0, 0, 0, 0],
                           [3, 3, 4, 0, 6, 6],
                           [3, 3, 4, 0, 0, 0]])
CLUSTER_CLASSES = [0, 1, 1, 1, 2, 1, 1]


ANY = {"min_interface": 1, "min_cluster_size": 1}  # every touching pair links; a lone object is a cluster


@pytest.mark.parametrize(
    "params,cluster_id,size,area,cluster_interface,touching,interface",
    [
        (ANY, [1, 1, 2, 3, 4, 5], [2, 2, 1, 1, 1, 1], [8, 8, 4, 2, 1, 2], [2, 2, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0],
         [2, 2, 0, 0, 0, 0]),
        ({**ANY, "same_class": False}, [1, 1, 2, 2, 3, 4], [2, 2, 2, 2, 1, 1], [8, 8, 6, 6, 1, 2], [2, 2, 2, 2, 0, 0],
         [1, 1, 1, 1, 0, 0], [2, 2, 2, 2, 0, 0]),
        ({**ANY, "min_interface": 3}, [1, 2, 3, 4, 5, 6], [1] * 6, [4, 4, 4, 2, 1, 2], [0] * 6, [0] * 6, [0] * 6),
        # the default minimum cluster size of 2: lone objects are in no cluster (id 0), the pair is cluster 1
        ({"min_interface": 1}, [1, 1, 0, 0, 0, 0], [2, 2, 1, 1, 1, 1], [8, 8, 4, 2, 1, 2], [2, 2, 0, 0, 0, 0],
         [1, 1, 0, 0, 0, 0], [2, 2, 0, 0, 0, 0]),
    ],
)
def test_clusters_by_hand(params, cluster_id, size, area, cluster_interface, touching, interface):
    data = FrameData.build(CLUSTER_LABELS, np.zeros(CLUSTER_LABELS.shape), CLUSTER_CLASSES)
    out = clusters.compute(data, clusters.ClusterParams(**params)).columns
    assert out["cluster_id"].tolist() == cluster_id
    assert out["cluster_size"].tolist() == size
    assert out["cluster_area"].tolist() == area
    assert out["cluster_interface_length"].tolist() == cluster_interface
    assert out["n_touching"].tolist() == touching
    assert out["interface_length"].tolist() == interface


def test_cluster_chain_and_unassigned():
    # a chain 1-2-3 of one class (1|2 and 2|3 share two pixel edges each), and two touching unassigned objects
    labels = np.array([[1, 2, 2, 0, 4, 5],
                       [1, 2, 3, 0, 4, 5],
                       [1, 0, 0, 0, 0, 0]])
    data = FrameData.build(labels, np.zeros(labels.shape), [0, 1, 1, 1, 0, 0])
    out = clusters.compute(data, clusters.ClusterParams(**ANY)).columns
    assert out["cluster_id"].tolist() == [1, 1, 1, 2, 2]
    assert out["cluster_interface_length"].tolist() == [4, 4, 4, 2, 2]
    assert out["n_touching"].tolist() == [1, 2, 1, 1, 1]
    assert out["interface_length"].tolist() == [2, 4, 2, 2, 2]
    out = clusters.compute(data, clusters.ClusterParams(**ANY, include_unassigned=False)).columns
    assert out["cluster_id"].tolist() == [1, 1, 1, 2, 3]
    review = clusters.review(data, clusters.ClusterParams(**ANY))
    assert review[0, 1] == 1 and review[0, 4] == 2 and review[2, 5] == 0


# 1 (class round, 15 px) and 2 (long, 15 px) share a border of 5 pixel edges; 3 (round, 12 px) shares 3 edges
# with 1 and 3 with 2; 5 and 6 (round, 2 px each) touch nothing.
TABLE_LABELS = np.array([[1, 1, 1, 2, 2, 2, 0, 6],
                         [1, 1, 1, 2, 2, 2, 0, 6],
                         [1, 1, 1, 2, 2, 2, 0, 0],
                         [1, 1, 1, 2, 2, 2, 0, 0],
                         [1, 1, 1, 2, 2, 2, 0, 0],
                         [3, 3, 3, 3, 3, 3, 0, 5],
                         [3, 3, 3, 3, 3, 3, 0, 5]])
TABLE_CLASSES = [0, 1, 2, 1, 0, 1, 1]
TABLE_NAMES = ("unassigned", "round", "long")


@pytest.mark.parametrize(
    "params,cluster_id,rows",
    [
        ({}, [0, 0, 0, 0, 0], []),  # defaults: 1|2 differ in class, 1|3 share only 3 edges (< 5)
        ({"same_class": False}, [1, 1, 0, 0, 0], [(1, 2, "1;2", 30, 5, "round:1;long:1")]),
        ({"same_class": False, "min_interface": 3}, [1, 1, 1, 0, 0], [(1, 3, "1;2;3", 42, 11, "round:2;long:1")]),
        ({"same_class": False, "min_interface": 3, "min_cluster_size": 4}, [0, 0, 0, 0, 0], []),
        ({"min_interface": 1, "min_cluster_size": 1}, [1, 2, 1, 3, 4],
         [(1, 2, "1;3", 27, 3, "round:2"), (2, 1, "2", 15, 0, "long:1"), (3, 1, "5", 2, 0, "round:1"),
          (4, 1, "6", 2, 0, "round:1")]),
    ],
)
def test_cluster_table_by_hand(params, cluster_id, rows):
    data = FrameData.build(TABLE_LABELS, np.zeros(TABLE_LABELS.shape), TABLE_CLASSES, TABLE_NAMES)
    out = clusters.compute(data, clusters.ClusterParams(**params))
    assert out.columns["cluster_id"].tolist() == cluster_id
    table = out.tables["clusters"]
    got = list(zip(*(np.asarray(table[c]).tolist() for c in ("cluster_id", "n_objects", "member_ids", "area",
                                                             "interface_length", "class_mix"))))
    assert got == rows


def test_cluster_outline_overlay_and_table_through_the_runner():
    data = FrameData.build(TABLE_LABELS, np.zeros(TABLE_LABELS.shape), TABLE_CLASSES, TABLE_NAMES)
    (layer,) = clusters.compute(data, clusters.ClusterParams(same_class=False, min_interface=3)).overlays()
    assert (layer.name, layer.kind, layer.ids.tolist()) == ("cluster_outlines", "outlines", [1])
    # objects 1, 2, 3 fill columns 0-5 of all 7 rows: one rectangle from corner (0, 0) to corner (6, 7)
    assert {tuple(v) for v in layer.data[0].tolist()} == {(0.0, 0.0), (6.0, 0.0), (6.0, 7.0), (0.0, 7.0)}
    result = run_labels(TABLE_LABELS, np.zeros(TABLE_LABELS.shape), ["clusters"],
                        {"clusters": {"same_class": False}}, image_name="a.tif", overlays=True)
    assert result.tables["clusters"].iloc[0].to_dict() == {
        "image": "a.tif", "frame": "", "cluster_id": 1, "n_objects": 2, "member_ids": "1;2", "area": 30,
        "interface_length": 5, "class_mix": "unassigned:2"}
    assert [o.name for o in result.overlays[("a.tif", "", "clusters")]] == ["cluster_outlines"]


def _droplet_scene():
    """Object 1 (5x5): 12 px of 10, 9 px of 12, a 1x3 run of 100 and a lone 100; object 2 (5x5) beside it:
    24 px of 50 and one 100 touching object 1's run."""
    labels = np.zeros((5, 10), int)
    labels[:, :5] = 1
    labels[:, 5:] = 2
    image = np.zeros((5, 10))
    obj1 = np.array([10] * 12 + [12] * 9, float)
    free = [(r, c) for r in range(5) for c in range(5) if (r, c) not in {(2, 2), (2, 3), (2, 4), (4, 0)}]
    for (r, c), v in zip(free, obj1):
        image[r, c] = v
    image[2, 2:5] = 100  # the run, ending at object 2's edge
    image[4, 0] = 100    # a lone bright pixel
    image[:, 5:] = 50
    image[2, 5] = 100    # object 2's bright pixel, next to object 1's run
    return labels, image[..., None]


@pytest.mark.parametrize(
    "params,n_drop,area,dilute",
    [
        # median 12, MAD 2 -> threshold 18: the run (3 px) and the lone pixel, which min_size 2 drops
        ({"k": 3, "min_size": 2}, [1, 0], [3, 0], [(120 + 108 + 100) / 22, (24 * 50 + 100) / 25]),
        ({"k": 3, "min_size": 1}, [2, 1], [4, 1], [(120 + 108) / 21, 50.0]),
        # 80th percentile of object 1 = 12 -> the same four pixels; object 2's 80th percentile is 50
        ({"method": "percentile", "percentile": 80, "min_size": 1}, [2, 1], [4, 1], [(120 + 108) / 21, 50.0]),
        # 90th percentile: 100 in object 1 (nothing strictly above), 50 in object 2 (its 100 is above)
        ({"method": "percentile", "percentile": 90, "min_size": 1}, [0, 1], [0, 1], [(120 + 108 + 400) / 25, 50.0]),
    ],
)
def test_condensates_by_hand(params, n_drop, area, dilute):
    labels, image = _droplet_scene()
    data = FrameData.build(labels, image)
    out = condensates.compute(data, condensates.CondensateParams(**params)).columns
    assert out["n_droplets"].tolist() == n_drop
    assert out["droplet_area"].tolist() == area
    assert out["droplet_fraction"].tolist() == pytest.approx([a / 25 for a in area])
    np.testing.assert_allclose(out["dilute_mean_c0"], dilute)
    with_drops = np.array(area) > 0
    np.testing.assert_allclose(out["droplet_mean_c0"][with_drops], 100.0)
    assert np.isnan(out["droplet_mean_c0"][~with_drops]).all()
    np.testing.assert_allclose(out["droplet_integrated"], 100.0 * np.array(area))
    np.testing.assert_allclose(out["partition_ratio"][with_drops], 100.0 / np.array(dilute)[with_drops])


def test_condensate_threshold_and_review_do_not_cross_objects():
    labels, image = _droplet_scene()
    data = FrameData.build(labels, image)
    p = condensates.CondensateParams(k=3, min_size=1)
    out = condensates.compute(data, p).columns
    assert out["droplet_threshold"].tolist() == [18.0, 50.0]
    droplets = condensates.review(data, p)
    assert droplets.max() == 3  # object 1's run, its lone pixel, object 2's pixel: the touching run stays split
    assert droplets[2, 4] != droplets[2, 5]


def test_condensate_defaults_classify_objects():
    # default k = 4: median 12 + 4 x MAD 2 = 20 in object 1 (the run of 3 and the lone pixel are above; the lone
    # one is below the minimum droplet size 2); object 2: 50 + 4 x 0 = 50, its one bright pixel is too small
    labels, image = _droplet_scene()
    result = condensates.compute(FrameData.build(labels, image), condensates.CondensateParams())
    out = result.columns
    assert out["droplet_threshold"].tolist() == [20.0, 50.0]
    assert out["condensate_class"].tolist() == ["condensate", "homogeneous"]
    assert out["has_condensate"].tolist() == [True, False]
    assert out["n_droplets"].tolist() == [1, 0] and out["droplet_fraction"].tolist() == [3 / 25, 0.0]
    # the droplet is a 1x3 run: its circularity is that of the same run measured as an object by 'basic'
    run = np.zeros((5, 10), int)
    run[2, 2:5] = 1
    expected = basic.compute(FrameData.build(run, image), basic.BasicParams())["circularity"][0]
    assert out["droplet_circularity"][0] == pytest.approx(expected) and np.isnan(out["droplet_circularity"][1])
    (layer,) = result.overlays
    assert (layer.name, layer.kind, layer.ids.tolist()) == ("droplets", "labels", [1])
    assert np.flatnonzero(layer.data.ravel()).tolist() == [22, 23, 24]
    # a droplet area of 4 px is needed: object 1 becomes homogeneous
    out = condensates.compute(FrameData.build(labels, image), condensates.CondensateParams(min_condensate_area=4))
    assert out.columns["condensate_class"].tolist() == ["homogeneous", "homogeneous"]
    # or 13 % of the object: 3 / 25 = 12 % is not enough
    out = condensates.compute(FrameData.build(labels, image),
                              condensates.CondensateParams(min_condensate_fraction=0.13))
    assert out.columns["has_condensate"].tolist() == [False, False]


def test_condensate_channel_out_of_range_is_reported():
    labels, image = _droplet_scene()
    with pytest.raises(PluginError, match="channel 2 does not exist: the image has 1 channel"):
        measure_labels(labels, image, ["condensates"], {"condensates": {"channel": 2}}, image_name="cells.tif")
