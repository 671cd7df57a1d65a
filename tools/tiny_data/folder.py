"""Which folder a tiny data maker may write into, and what it may replace there.

Writing into any other folder would overwrite a user's files of the same names (a real ADE20K has
exactly the tiny set's file names) and mix the rest into the new set. Each tiny set marks its folder
(:data:`MARKER`), so that making it again replaces it: only the entries the set itself consists of
(:data:`OWN_ENTRIES`); anything else a user keeps there (notes, a work_dirs/) stays.
"""
from __future__ import annotations

import shutil
from pathlib import Path

MARKER = '.lape_mm_tiny_dataset'  # holds the kind: 'ade', 'coco' or 'imagenet'
# What each kind writes into its folder, besides the marker.
OWN_ENTRIES = {
    'ade': ('ADEChallengeData2016',),
    'coco': ('annotations/instances_train2017.json', 'annotations/instances_val2017.json', 'train2017', 'val2017'),
    'imagenet': ('train', 'val'),
}


def mark(out: str | Path, kind: str) -> None:
    """Record that ``out`` holds a tiny set of ``kind`` (written first: a set cut short is still ours)."""
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / MARKER).write_text(f'{kind}\n')


def claim_folder(out: str | Path, kind: str, force: bool = False) -> None:
    """Make ``out`` ready for a new tiny set of ``kind``: refuse (FileExistsError) a non-empty folder
    that is not one, unless ``force``; delete the entries of :data:`OWN_ENTRIES` otherwise, so that no
    file of an earlier set remains, and leave everything else."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f'{out} is a file, not a folder; give a folder for the tiny {kind} set')
    if not out.is_dir() or not any(out.iterdir()):
        return
    found = (out / MARKER).read_text().strip() if (out / MARKER).is_file() else None
    own = ', '.join(OWN_ENTRIES[kind])
    if found != kind and not force:
        names = sorted(p.name for p in out.iterdir())[:3]
        held = f'a tiny {found} set' if found else f'files that are not a tiny dataset (e.g. {names})'
        raise FileExistsError(f'{out} is not empty: it holds {held}; a tiny {kind} set written there would overwrite '
                              f'files of the same names and mix with the rest. Give an empty or new folder, or '
                              f'--force to replace {own} in {out}')
    for path in (out / name for name in OWN_ENTRIES[kind]):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
