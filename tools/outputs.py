"""Where the tools may write: never over a file they read, never into a dataset or a folder of other files.

Checked before any work starts, so that a refusal costs nothing and a run never ends by replacing
a checkpoint with its ONNX export, or ground-truth label maps with predictions of the same names.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from .launch import config_dicts

# Marks a folder that tools/test.py --out wrote predictions into: a later run may write there again.
PREDICTIONS_MARKER = '.lape_mm_predictions'
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _same_file(a: Path, b: Path) -> bool:
    return a.exists() and b.exists() and os.path.samefile(a, b)


def refuse_overwriting_inputs(option: str, out: str | Path, inputs: Mapping[str, str | Path | None]) -> None:
    """FileExistsError if ``out`` is one of ``inputs`` (by name: 'checkpoint' -> path), also through a
    link, or names a folder."""
    out = Path(out)
    if out.is_dir():
        raise FileExistsError(f'{option} {out} is a folder; name the file to write in it')
    for what, path in inputs.items():
        if path is not None and '://' not in str(path) and _same_file(out, Path(path)):
            raise FileExistsError(f'{option} {out} is the {what} this tool reads: writing it would replace the '
                                  f'{what}; give another file name')


def dataset_folders(cfg: Mapping) -> list[Path]:
    """The data roots and image / annotation folders of a config's train, val and test datasets
    (wrappers such as ConcatDataset and RepeatDataset included)."""
    folders: list[Path] = []
    for name in LOADERS:
        for node in config_dicts((cfg.get(name) or {}).get('dataset')):
            root, prefix = node.get('data_root') or '', node.get('data_prefix')
            if root:
                folders.append(Path(root))
            folders += [Path(root) / sub for sub in (prefix.values() if isinstance(prefix, Mapping) else [prefix])
                        if isinstance(sub, str) and sub]
    return folders


def claim_prediction_folder(out: str | Path, datasets: list[Path]) -> None:
    """Make ``out`` the folder for tools/test.py's prediction PNGs, or raise FileExistsError.

    Allowed: a new or empty folder, or one that an earlier ``tools/test.py --out`` wrote (it holds
    :data:`PREDICTIONS_MARKER` and .png files only), outside every dataset folder: the PNGs take the
    images' names, which are the ground truth's in ADE20K and most mmseg layouts.
    """
    out = Path(out)
    resolved = out.resolve()
    for folder in datasets:
        if resolved == folder.resolve() or folder.resolve() in resolved.parents:
            raise FileExistsError(f'--out {out} lies in the dataset folder {folder} that this config reads; '
                                  f'predictions take the images\' names and would replace its files: give a '
                                  f'folder outside it, e.g. work_dirs/predictions')
    if out.exists() and not out.is_dir():
        raise FileExistsError(f'--out {out} is a file; give a folder for the prediction PNGs')
    names = sorted(os.listdir(out)) if out.is_dir() else []
    foreign = [n for n in names if n != PREDICTIONS_MARKER and not (n.endswith('.png') and (out / n).is_file())]
    if names and (PREDICTIONS_MARKER not in names or foreign):
        held = f'files tools/test.py did not write (e.g. {(foreign or names)[:3]})'
        raise FileExistsError(f'--out {out} holds {held}; predictions written there could replace them: give a '
                              f'new or empty folder, or one an earlier tools/test.py --out wrote')
    out.mkdir(parents=True, exist_ok=True)
    (out / PREDICTIONS_MARKER).touch()
