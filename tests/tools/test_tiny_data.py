"""tools/tiny_data: the tiny data sets the end-to-end tests train on."""
import numpy as np
from PIL import Image

from tools.tiny_data import make_tiny_ade


def test_tiny_ade_holds_the_highest_class(tmp_path):
    root = make_tiny_ade(tmp_path, num_train=8, num_val=1, seed=0)
    maps = (root / 'annotations/training').glob('*.png')
    assert {0, 1, 150} <= set().union(*(np.unique(np.asarray(Image.open(p))).tolist() for p in maps))
