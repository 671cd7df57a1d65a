"""Checkpoints from ``http(s)://`` URLs, weights-only, beside torch.hub's cache.

torch.hub caches a download as ``<hub dir>/checkpoints/<file name>``, so ``http://a/model.pth`` and
``http://b/model.pth`` share one file. Our downloads go to ``<hub dir>/checkpoints/<16 hex digits of
sha256(url)>/<file name>``, one folder per URL, so they never hand each other's weights. A file that
torch.hub's cache already holds under the URL's file name (e.g. put there to prepare an offline node) is
used without network, with a warning: by its name alone, nobody can tell which URL it came from."""
import hashlib
import http.client
import logging
import os
import os.path as osp
import urllib.error
from urllib.parse import urlsplit

import torch
from mmengine.logging import print_log

from ..errors import CheckpointError
from .safe_load import safe_load


def _warn(message: str) -> None:
    print_log(message, logger='current', level=logging.WARNING)


def cache_paths(url: str, model_dir: str | None = None, file_name: str | None = None) -> tuple[str, str]:
    """Where ``url`` is cached: our per-URL path, and torch.hub's path for its file name (``model_dir``
    defaults to torch.hub's ``<hub dir>/checkpoints``)."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    name = file_name or osp.basename(urlsplit(url).path) or 'checkpoint'
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return osp.join(model_dir, key, name), osp.join(model_dir, name)


def download(url: str, path: str, check_hash: bool = False, progress: bool = True) -> None:
    """torch.hub's download to ``path``; a failed one is a :class:`CheckpointError` naming the URL."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    match = torch.hub.HASH_REGEX.search(osp.basename(path)) if check_hash else None
    print_log(f'downloading {url} to {path}', logger='current')
    try:
        torch.hub.download_url_to_file(url, path, match.group(1) if match else None, progress=progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError, RuntimeError) as err:
        raise CheckpointError(f'cannot download checkpoint {url}: {err}') from None


def load_url_weights_only(url: str, map_location=None, model_dir: str | None = None, file_name: str | None = None,
                          check_hash: bool = False, progress: bool = True) -> dict:
    """The checkpoint at ``url`` (an mmengine checkpoint loader; torch.hub's arguments), loaded weights-only from the cache of
    :func:`cache_paths`, else downloaded there. A download of ours that does not load is deleted (so the
    next call fetches it again) and is a :class:`CheckpointError` naming the URL, the file and the problem."""
    ours, hubs = cache_paths(url, model_dir, file_name)
    if not osp.isfile(ours) and osp.isfile(hubs):
        _warn(f'{url}: using {hubs} from torch.hub\'s cache, which keeps files by name alone; if it was '
              f'downloaded from another URL that ends in the same name, delete it')
        try:
            return safe_load(hubs, map_location, source=f'{url} (torch.hub cache {hubs})')
        except CheckpointError as err:  # torch.hub's file, left as it is
            _warn(f'{err} Downloading it to {ours} instead.')
    elif osp.isfile(ours):
        try:
            return safe_load(ours, map_location, source=f'{url} (cached as {ours})')
        except CheckpointError as err:
            _warn(f'{err} Deleting the cached file and downloading it again.')
            os.remove(ours)
    download(url, ours, check_hash, progress)
    try:
        return safe_load(ours, map_location, source=f'{url} (downloaded to {ours}, now deleted)')
    except CheckpointError:
        os.remove(ours)
        raise
