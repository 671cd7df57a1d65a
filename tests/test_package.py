"""What ``import lape_mm`` does to a process: it registers names and widens torch's weights-only
allowlist, and nothing else, so other models in the same process behave as without it."""
import json
import subprocess
import sys

from conftest import ROOT

# Runs in a fresh interpreter: the objects mmengine and mmcv use, before and after the import.
SNAPSHOT = r'''
import json, sys
import mmcv.ops
nms_module, roi_align_module = sys.modules['mmcv.ops.nms'], sys.modules['mmcv.ops.roi_align']
import mmengine.fileio.backends.registry_utils as backends
import mmengine.runner.checkpoint as checkpoint
from mmengine.logging import HistoryBuffer
from mmengine.registry import DefaultScope

def snapshot():
    objects = {f'loader {prefix!r}': loader for prefix, loader in checkpoint.CheckpointLoader._schemes.items()}
    objects.update({f'backend {name}': cls for name, cls in backends.backends.items()})
    objects.update({f'prefix backend {p}': cls for p, cls in backends.prefix_to_backends.items()})
    objects.update({'load_url': checkpoint.load_url, 'load_from_http': checkpoint.load_from_http,
                    'nms': nms_module.nms, 'roi_align': roi_align_module.roi_align,
                    'batched_nms': nms_module.batched_nms, 'HistoryBuffer.__getstate__': HistoryBuffer.__getstate__,
                    'HistoryBuffer.__setstate__': HistoryBuffer.__setstate__, 'default scope': DefaultScope.get_current_instance()})
    return {name: id(obj) for name, obj in objects.items()}

before = snapshot()
import lape_mm
after = snapshot()
print(json.dumps({'changed': sorted(k for k in before if after.get(k) != before[k]), 'added': sorted(after.keys() - before.keys())}))
'''


def test_import_changes_no_object_of_mmengine_or_mmcv():
    proc = subprocess.run([sys.executable, '-c', SNAPSHOT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {'changed': [], 'added': ['backend atomic_local']}  # a registry entry, under its own name


def test_torchvision_checkpoint_in_torch_hub_cache_loads_offline_with_lape_mm_imported(tmp_path, monkeypatch):
    """How offline cluster nodes are prepared: the file torch.hub would download is already in its cache."""
    import torch
    from mmengine.runner.checkpoint import CheckpointLoader, get_torchvision_models
    import lape_mm  # noqa: F401
    url = get_torchvision_models()['resnet18']
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    cached = tmp_path / 'hub' / 'checkpoints' / url.rsplit('/', 1)[-1]
    cached.parent.mkdir(parents=True)
    torch.save({'conv1.weight': torch.ones(2)}, cached)

    def no_network(*args, **kwargs):
        raise OSError('no network on this node')
    monkeypatch.setattr(torch.hub, 'download_url_to_file', no_network)
    checkpoint = CheckpointLoader.load_checkpoint('torchvision://resnet18', map_location='cpu')
    assert torch.equal(checkpoint['conv1.weight'], torch.ones(2))
