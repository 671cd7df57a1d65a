"""Checkpoints from ``http(s)://`` URLs: downloaded once into a cache folder per URL, then read by :func:`safe_load`.

torch.hub (which mmengine's ``load_url`` wraps) caches a download under its file name alone, so
``http://a/model.pth`` and ``http://b/model.pth`` would share one file: we key the cache by a hash of the
whole URL. The download itself is torch.hub's ``download_url_to_file`` (it writes a temporary file and
renames it when complete). A cached file that no longer loads is named, deleted and fetched again."""
import hashlib
import http.client
import logging
import os
import os.path as osp
import urllib.error
from urllib.parse import urlsplit

import torch
from mmengine.logging import print_log

from .safe_load import CheckpointError, safe_load


def cached_path(url: str, model_dir: str | None = None, file_name: str | None = None) -> str:
    """Where ``url`` is cached: ``<model_dir>/<16 hex digits of sha256(url)>/<file name>``, with
    ``model_dir`` defaulting to torch.hub's ``<hub dir>/checkpoints``."""
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    return osp.join(model_dir, key, file_name or osp.basename(urlsplit(url).path) or 'checkpoint')


def download(url: str, path: str, check_hash: bool = False, progress: bool = True) -> None:
    """torch.hub's download to ``path``; a failed one is a :class:`CheckpointError` naming the URL."""
    os.makedirs(osp.dirname(path), exist_ok=True)
    match = torch.hub.HASH_REGEX.search(osp.basename(path)) if check_hash else None
    print_log(f'downloading {url} to {path}', logger='current')
    try:
        torch.hub.download_url_to_file(url, path, match.group(1) if match else None, progress=progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError, RuntimeError) as err:
        raise CheckpointError(f'cannot download checkpoint {url}: {err}') from None


def load_url_weights_only(url: str, model_dir: str | None = None, map_location=None, progress: bool = True,
                          check_hash: bool = False, file_name: str | None = None) -> dict:
    """mmengine's ``load_url`` (``http(s)://``, ``open-mmlab://``, ``torchvision://``...), weights-only,
    with the cache of :func:`cached_path`. A download that does not load is deleted (so the next call
    fetches it again) and is a :class:`CheckpointError` naming the URL, the cache file and the problem."""
    path = cached_path(url, model_dir, file_name)
    if osp.isfile(path):
        try:
            return safe_load(path, map_location, source=f'{url} (cached as {path})')
        except CheckpointError as err:
            print_log(f'{err} Deleting the cached file and downloading it again.', logger='current',
                      level=logging.WARNING)
            os.remove(path)
    download(url, path, check_hash, progress)
    try:
        return safe_load(path, map_location, source=f'{url} (downloaded to {path}, now deleted)')
    except CheckpointError:
        os.remove(path)
        raise
