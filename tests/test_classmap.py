"""Class ids renumbered by name: one mapping for training targets, model results and project adoption."""

from __future__ import annotations

import numpy as np

from mcp_core.classmap import IGNORE, remap_classes


def test_classes_follow_their_names():
    # file: 1 = mitotic, 2 = round; target: 1 = round, 2 = elongated, 3 = mitotic
    got = remap_classes([0, 1, 2, 2, 1], ["unassigned", "mitotic", "round"], ["bg", "round", "elongated", "mitotic"])
    assert got.tolist() == [0, 3, 1, 1, 3]


def test_unknown_names_unassigned_and_out_of_range_ids_become_missing():
    names = ["unassigned", "round", "ghost"]
    got = remap_classes(np.array([0, 1, 2, 7]), names, ["bg", "round"], missing=IGNORE)
    assert got.tolist() == [IGNORE, 1, IGNORE, IGNORE]


def test_unnamed_classes_keep_their_id_when_the_target_has_it():
    got = remap_classes([1, 2, 3], ["unassigned", "class 1", "round", "class 3"], ["bg", "round", "other"])
    assert got.tolist() == [1, 1, 0]  # "class 1" -> id 1; round by name; "class 3" beyond the target -> missing
