"""Tracking moving discs: a crossing, a gap, a newcomer, class changes; the wide export; a T-series file end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment
from skimage.draw import disk

from mcp_core.measure import FrameData, measure
from mcp_core.measure.tracks import track_positions, tracks_wide
from mcp_plugins import tracking

SHAPE = (64, 80)


def disc_frames(discs_per_frame, classes=None):
    """Frames from ``[[(mask id, (y, x), radius, intensity), ...], ...]``."""
    frames = []
    for t, discs in enumerate(discs_per_frame):
        labels = np.zeros(SHAPE, np.uint16)
        image = np.zeros(SHAPE)
        for mask_id, (y, x), r, value in discs:
            rr, cc = disk((y, x), r, shape=SHAPE)
            labels[rr, cc] = mask_id
            image[rr, cc] = value
        frames.append(FrameData.build(labels, image, classes, frame=f"T{t}"))
    return frames


def track(frames, params):
    """The per-object columns of the tracker."""
    return tracking.compute(frames, params).columns


def tracks_of(out):
    """``{(t, mask_id): track_id}``."""
    return {(int(t), int(m)): int(k) for t, m, k in zip(out["t"], out["mask_id"], out["track_id"])}


def scene():
    """A moves right, B moves left below it (they pass each other at t = 3), C is missed at t = 3, D appears at t = 2.

    Mask ids are shuffled in every frame so that ids alone cannot give the answer; returns the
    frames and, per frame, the disc name of each mask id (``names[t][mask_id - 1]``).
    """
    per_frame, names = [], []
    for t in range(6):
        discs = [("A", (20, 10 + 8 * t), 4, 100.0), ("B", (31, 58 - 8 * t), 5, 200.0)]
        if t != 3:
            discs.append(("C", (52, 10 + 5 * t), 4, 150.0))
        if t >= 2:
            discs.append(("D", (8, 70), 3, 120.0))
        order = np.random.default_rng(t).permutation(len(discs))
        per_frame.append([(i + 1, discs[j][1], discs[j][2], discs[j][3]) for i, j in enumerate(order)])
        names.append([discs[j][0] for j in order])
    return disc_frames(per_frame), names


def identity(out, names):
    """``{disc name: set of track ids}`` over the whole series."""
    found: dict[str, set] = {}
    for (t, mask_id), track in tracks_of(out).items():
        found.setdefault(names[t][mask_id - 1], set()).add(track)
    return found


def test_crossing_gap_and_newcomer():
    frames, names = scene()
    out = track(frames, tracking.TrackParams(max_distance=12, max_gap=1))
    ids = identity(out, names)
    assert all(len(v) == 1 for v in ids.values()), ids  # each disc keeps one track through the crossing and gap
    assert len({next(iter(v)) for v in ids.values()}) == 4  # and the four tracks differ
    by = {(int(t), names[int(t)][int(m) - 1]): i for i, (t, m) in enumerate(zip(out["t"], out["mask_id"]))}
    assert out["track_gap"][by[(4, "C")]] == 1  # C was missed once
    assert out["track_step"][by[(4, "C")]] == pytest.approx(10.0)  # two steps of 5 px
    assert out["track_step"][by[(1, "A")]] == pytest.approx(8.0)
    assert np.isnan(out["track_step"][by[(2, "D")]])  # a track's first observation
    assert out["track_length"][by[(0, "C")]] == 5
    assert out["track_length"][by[(5, "D")]] == 4


def test_status_cost_table_and_trails_by_hand():
    # A: x = 10, 14, (missed), 22, 25 on row 20; C: two frames then gone; D only at t = 3; E only at t = 4
    a, c = (1, (20, 10), 4, 1.0), (2, (50, 60), 4, 1.0)
    frames = disc_frames([[a, c], [(1, (20, 14), 4, 1.0), (2, (50, 63), 4, 1.0)], [],
                          [(1, (20, 22), 4, 1.0), (2, (5, 70), 3, 1.0)],
                          [(1, (20, 25), 4, 1.0), (2, (60, 20), 3, 1.0)]])
    params = tracking.TrackParams(max_distance=10, max_gap=1, weight_area=0, weight_intensity=0, gap_penalty=0.5,
                                  trail_frames=10)
    result = tracking.compute(frames, params)
    out = result.columns
    rows = {(int(t), int(m)): i for i, (t, m) in enumerate(zip(out["t"], out["mask_id"]))}
    status = {k: out["track_status"][i] for k, i in rows.items()}
    assert status == {(0, 1): "new", (0, 2): "new", (1, 1): "continued", (1, 2): "ended", (3, 1): "gap-closed",
                      (3, 2): "ended", (4, 1): "continued", (4, 2): "new"}
    cost = {k: out["track_cost"][i] for k, i in rows.items()}
    # distance / (max_distance x (gap + 1)) + gap_penalty x gap
    assert cost[(1, 1)] == pytest.approx(4 / 10) and cost[(1, 2)] == pytest.approx(3 / 10)
    assert cost[(3, 1)] == pytest.approx(8 / 20 + 0.5) and cost[(4, 1)] == pytest.approx(3 / 10)
    assert np.isnan([cost[(0, 1)], cost[(0, 2)], cost[(3, 2)], cost[(4, 2)]]).all()
    tracks = pd.DataFrame(result.tables["tracks"])
    assert tracks[["track_id", "start_t", "end_t", "n_frames", "n_gap_closings", "ended"]].values.tolist() == [
        [1, 0, 4, 4, 1, False], [2, 0, 1, 2, 0, True], [3, 3, 3, 1, 0, True], [4, 4, 4, 1, 0, False]]
    assert tracks["path_length"].tolist() == pytest.approx([4 + 8 + 3, 3, 0, 0])
    assert tracks["mean_cost"][:2].tolist() == pytest.approx([(0.4 + 0.9 + 0.3) / 3, 0.3])
    assert tracks["mean_cost"][2:].isna().all()
    trails = result.overlays()
    (trail,) = trails[4]
    assert (trail.name, trail.kind, trail.ids.tolist()) == ("trails", "lines", [1, 4])
    assert trail.data[0].tolist() == [[10.5, 20.5], [14.5, 20.5], [22.5, 20.5], [25.5, 20.5]]
    assert trail.data[1].tolist() == [[20.5, 60.5]]
    assert trails[2][0].ids.tolist() == []  # nothing seen at t = 2
    short = tracking.compute(frames, params.model_copy(update={"trail_frames": 2})).overlays()[4][0]
    assert short.data[0].tolist() == [[22.5, 20.5], [25.5, 20.5]]  # t = 3 and 4


def test_without_gap_closing_the_track_breaks():
    frames, names = scene()
    ids = identity(track(frames, tracking.TrackParams(max_distance=12, max_gap=0)), names)
    assert len(ids["C"]) == 2 and len(ids["A"]) == 1


def test_area_weight_resolves_a_swap_that_distance_alone_gets_wrong():
    # small A moves 17 px down to where big B was; B moves up and right, ending 11 px from A's old place
    frames = disc_frames([[(1, (20, 20), 3, 1.0), (2, (40, 20), 7, 1.0)],
                          [(1, (37, 20), 3, 1.0), (2, (20, 31), 7, 1.0)]])
    common = {"max_distance": 30, "weight_intensity": 0}
    with_area = tracks_of(track(frames, tracking.TrackParams(weight_area=1, **common)))
    assert with_area[(0, 1)] == with_area[(1, 1)] and with_area[(0, 2)] == with_area[(1, 2)]
    distance_only = tracks_of(track(frames, tracking.TrackParams(weight_area=0, **common)))
    assert distance_only[(0, 1)] == distance_only[(1, 2)] and distance_only[(0, 2)] == distance_only[(1, 1)]


@pytest.mark.parametrize("same_class,linked", [(True, False), (False, True)])
def test_same_class_option(same_class, linked):
    frames = disc_frames([[(1, (20, 20), 4, 1.0)], [(1, (20, 22), 4, 1.0)]])
    frames[1] = FrameData.build(frames[1].labels, frames[1].image, [0, 2], frame="T1")  # class changes 0 -> 2
    ids = tracks_of(track(frames, tracking.TrackParams(same_class=same_class)))
    assert (ids[(0, 1)] == ids[(1, 1)]) is linked


def test_out_of_reach_starts_a_new_track():
    frames = disc_frames([[(1, (20, 10), 4, 1.0)], [(1, (20, 40), 4, 1.0)]])
    ids = tracks_of(track(frames, tracking.TrackParams(max_distance=20)))
    assert ids[(0, 1)] != ids[(1, 1)]


def test_assignment_is_optimal_against_dense_hungarian():
    rng = np.random.default_rng(5)
    for _ in range(30):
        n_rows, n_cols = rng.integers(1, 6, size=2)
        dense = np.where(rng.random((n_rows, n_cols)) < 0.6, rng.random((n_rows, n_cols)) * 3, np.inf)
        r, c = np.nonzero(np.isfinite(dense))
        links = tracking.assign(n_rows, n_cols, (r, c, dense[r, c]), no_link=1.0)
        total = sum(dense[a, b] for a, b in links) + (n_rows - len(links) + n_cols - len(links)) * 1.0
        big = np.full((n_rows + n_cols, n_cols + n_rows), np.inf)
        big[:n_rows, :n_cols] = dense
        big[:n_rows, n_cols:][np.diag_indices(n_rows)] = 1.0
        big[n_rows:, :n_cols][np.diag_indices(n_cols)] = 1.0
        big[n_rows:, n_cols:] = 0.0
        rows, cols = linear_sum_assignment(np.where(np.isfinite(big), big, 1e9))
        assert total == pytest.approx(big[rows, cols].sum())


def test_wide_export_and_positions():
    df = pd.DataFrame({"image": ["a.tif"] * 5, "frame": ["T0", "T0", "T1", "T2", "T2"], "mask_id": [1, 2, 1, 1, 2],
                       "track_id": [1, 2, 1, 1, 2], "track_t": [0, 0, 1, 2, 2],
                       "track_x": [1.0, 5.0, 2.0, 3.0, 6.0], "track_y": [0.0, 0.0, 0.0, 0.0, 1.0],
                       "area": [10, 20, 11, 12, 22]})
    wide = tracks_wide(df, ["area"])
    assert list(wide.columns) == ["t", "track1_x", "track1_y", "track1_area", "track2_x", "track2_y", "track2_area"]
    assert wide["track1_x"].tolist() == [1.0, 2.0, 3.0]
    assert np.isnan(wide["track2_area"][1])  # track 2 missed t = 1
    pos = track_positions(df)
    assert pos[["track_id", "t"]].values.tolist() == [[1, 0], [1, 1], [1, 2], [2, 0], [2, 2]]
    assert "status" not in pos.columns
    statuses = df.assign(track_status=["new", "new", "continued", "continued", "gap-closed"],
                         track_cost=[np.nan, np.nan, 0.1, 0.1, 0.7])
    pos = track_positions(statuses)
    assert pos["status"].tolist() == ["new", "continued", "continued", "new", "gap-closed"]
    assert pos["cost"].tolist()[3:] == [pytest.approx(np.nan, nan_ok=True), 0.7]
    with pytest.raises(Exception, match="no column.*volume"):
        tracks_wide(df, ["volume"])


def test_t_series_file_end_to_end(tmp_path):
    import tifffile

    from mcp_core.labels import LabelSet, save_labels

    frames, names = scene()
    stack = np.stack([f.image[..., 0] for f in frames]).astype(np.uint16)
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, stack, imagej=True, metadata={"axes": "TYX"})
    for t, f in enumerate(frames):
        save_labels(tmp_path / f"movie__T{t}_seg.npy", LabelSet(np.asarray(f.labels)))
    df = measure(tmp_path, ["basic", "tracking"], {"tracking": {"max_distance": 12, "max_gap": 1}}, source="seg")
    assert df["frame"].tolist()[:1] == ["T0"] and df["image"].unique().tolist() == ["movie.tif"]
    assert len(df) == sum(len(f.ids) for f in frames)
    per_disc = {}
    for frame, mask_id, track in zip(df["frame"], df["mask_id"], df["track_id"]):
        per_disc.setdefault(names[int(frame[1:])][mask_id - 1], set()).add(track)
    assert all(len(v) == 1 for v in per_disc.values())
    np.testing.assert_allclose(df["track_x"], df["centroid_x"])
    wide = tracks_wide(df, ["mean_c0"])
    assert len(wide) == 6 and wide.filter(like="_mean_c0").shape[1] == 4


def test_folder_series_links_across_files(tmp_path):
    import tifffile

    from mcp_core.labels import LabelSet, save_labels

    frames = disc_frames([[(1, (20, 10 + 5 * t), 4, 50.0)] for t in range(3)])
    for t, f in enumerate(frames):
        tifffile.imwrite(tmp_path / f"t{t}.tif", f.image[..., 0].astype(np.uint16))
        save_labels(tmp_path / f"t{t}_seg.npy", LabelSet(np.asarray(f.labels)))
    per_file = measure(tmp_path, ["tracking"], source="seg", series="file")
    assert per_file["track_length"].tolist() == [1, 1, 1]
    across = measure(tmp_path, ["tracking"], source="seg", series="folder")
    assert across["track_id"].nunique() == 1 and across["track_t"].tolist() == [0, 1, 2]
