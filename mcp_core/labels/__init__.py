"""Label sets and label files."""

from .files import load_labels, load_labels_for, majority_class, save_labels, to_seg_dict
from .labelset import LabelSet, default_color

__all__ = ["LabelSet", "default_color", "load_labels", "load_labels_for", "majority_class", "save_labels", "to_seg_dict"]
