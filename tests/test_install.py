"""Installing lape_mm where users already are, and the GPU check's path rehearsed on the CPU.

What runs where: the package and tools/ byte-compile under every Python 3.10-3.13 found here
(pyenv); they import and run under 3.11 (this suite) and 3.12 (the rehearsal below, with numpy 2).
Importing under 3.10 and 3.13 would need a torch for each, which this machine does not keep.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT

PYTHONS = ('3.10', '3.11', '3.12', '3.13')
# What the GPU machine has of what the check touches (its image: Python 3.12, torch with CUDA, timm,
# numpy 2, OpenCV, matplotlib, scipy, pytest). torch is the tested one, whose CUDA libraries this
# suite's venv holds already (Python-independent: the rehearsal links them instead of unpacking 3 GB).
GPU_IMAGE = ['torch==2.14.1', 'torchvision==0.29.1', 'timm', 'safetensors', 'numpy>=2', 'opencv-python-headless',
             'matplotlib', 'contourpy', 'cycler', 'fonttools', 'kiwisolver', 'pyparsing', 'python-dateutil', 'six',
             'packaging', 'pillow', 'scipy', 'pyyaml', 'rich', 'markdown-it-py', 'mdurl', 'pygments', 'regex',
             'tqdm', 'pytest', 'iniconfig', 'pluggy', 'filelock', 'typing-extensions', 'sympy', 'mpmath', 'networkx',
             'jinja2', 'markupsafe', 'fsspec', 'einops', 'zipp', 'click', 'markdown']
WHEEL_TARGET = ['--only-binary=:all:', '--python-version', '3.12', '--implementation', 'cp', '--abi', 'cp312',
                '--abi', 'abi3', '--abi', 'none', '--platform', 'manylinux_2_28_x86_64', '--platform',
                'manylinux_2_17_x86_64', '--platform', 'manylinux2014_x86_64', '--platform', 'any']


def find_python(version: str) -> str | None:
    """``pythonX.Y`` on PATH, else pyenv's, if it runs."""
    pyenv = os.environ.get('PYENV_ROOT', os.path.expanduser('~/.pyenv'))
    for candidate in (shutil.which(f'python{version}'), *sorted(glob.glob(f'{pyenv}/versions/{version}.*/bin/python{version}'))):
        if candidate and subprocess.run([candidate, '-c', ''], capture_output=True, timeout=60).returncode == 0:
            return candidate
    return None


def run(cmd: list[str], timeout: int, **kwargs) -> subprocess.CompletedProcess:
    """``cmd`` to completion, output captured; it and everything it started (its own process group) is
    killed at ``timeout`` or on any error. Fails the test with the output when it exits non-zero."""
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                             **kwargs)
    try:
        stdout, stderr = popen.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert popen.returncode == 0, f'{cmd[:4]}... exited {popen.returncode}:\n{stdout[-4000:]}\n{stderr[-4000:]}'
    return subprocess.CompletedProcess(cmd, popen.returncode, stdout, stderr)


def test_declared_python_range_covers_the_checked_versions():
    import tomllib  # noqa: PLC0415  (3.11+, like this suite's venv)
    from packaging.specifiers import SpecifierSet
    declared = SpecifierSet(tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['requires-python'])
    assert [v for v in PYTHONS if v in declared] == list(PYTHONS)


@pytest.mark.slow
@pytest.mark.parametrize('version', PYTHONS)
def test_package_and_tools_byte_compile(version, tmp_path):
    python = find_python(version)
    if python is None:
        pytest.skip(f'no python{version} here (pyenv install {version})')
    run([python, '-m', 'compileall', '-q', 'lape_mm', 'tools', 'tests', 'scripts'], timeout=120, cwd=ROOT,
        env={**os.environ, 'PYTHONPYCACHEPREFIX': str(tmp_path)})


def _metadata(name: str, version: str, requires: tuple[str, ...]) -> str:
    return (f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n'
            + ''.join(f'Requires-Dist: {r}\n' for r in requires))


def _stub_distribution(site: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """An installed distribution as pip sees one: a dist-info folder with its metadata (no code)."""
    info = site / f'{name.replace("-", "_")}-{version}.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(_metadata(name, version, requires))
    (info / 'RECORD').write_text('')


def _stub_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> None:
    """A wheel on an index as pip sees one: its metadata (no code)."""
    import zipfile
    info = f'{name}-{version}.dist-info'
    with zipfile.ZipFile(folder / f'{name}-{version}-py3-none-any.whl', 'w') as wheel:
        wheel.writestr(f'{info}/METADATA', _metadata(name, version, requires))
        wheel.writestr(f'{info}/WHEEL', 'Wheel-Version: 1.0\nGenerator: stub\nRoot-Is-Purelib: true\n'
                                        'Tag: py3-none-any\n')
        wheel.writestr(f'{info}/RECORD', '')


# A GPU machine's environment: a CUDA torch and OpenMMLab, with the requirements each declares that
# matter here (timm's torchvision); torchvision itself is added per case.
INSTALLED = {
    'torch': ('2.11.0+cu130', ()), 'numpy': ('2.4.6', ()), 'mmengine': ('0.10.7', ()), 'mmcv': ('2.1.0', ()),
    'timm': ('1.0.20', ('torch', 'torchvision', 'pyyaml', 'huggingface_hub', 'safetensors')),
    'mmsegmentation': ('1.2.2', ()), 'mmdet': ('3.3.0', ()), 'mmpretrain': ('1.2.0', ()), 'ftfy': ('6.3.1', ()),
    'regex': ('2024.11.6', ()), 'matplotlib': ('3.10.0', ()), 'pycocotools': ('2.0.8', ()), 'tqdm': ('4.67.1', ()),
    'scikit-learn': ('1.6.1', ()), 'scipy': ('1.15.0', ()), 'safetensors': ('0.6.2', ()), 'pyyaml': ('6.0.2', ()),
    'huggingface_hub': ('0.30.0', ())}
# What the index offers: the newest torchvision pins the newest torch, the older one the installed torch.
INDEX = [('torch', '2.13.0', ()), ('torchvision', '0.28.0', ('torch==2.13.0',)),
         ('torchvision', '0.26.0', ('torch==2.11.0',))]


def _readme_install_command() -> list[str]:
    """README's command that keeps the installed torch, with ``$(python -c ...)`` as the stub torch's version."""
    line = next(line.strip() for line in (ROOT / 'README.md').read_text().splitlines()
                if line.strip().startswith('pip install -e . "torch=='))
    version = "$(python -c 'import torch; print(torch.__version__)')"
    assert version in line, line
    return shlex.split(line.replace(version, INSTALLED['torch'][0]))[2:]  # after 'pip install'


@pytest.mark.parametrize('torchvision, command, expected', [
    ('0.26.0', ['-e', '.'], {'lape_mm': '0.1.0'}),
    (None, ['-e', '.'], {'lape_mm': '0.1.0', 'torch': '2.13.0', 'torchvision': '0.28.0'}),  # why README pins torch
    (None, 'readme', {'lape_mm': '0.1.0', 'torchvision': '0.26.0'}),
], ids=['with torchvision', 'plain, without', 'README, without'])
def test_editable_install_keeps_the_installed_torch(tmp_path, torchvision, command, expected):
    """pip's resolver (a dry run, offline, 3 s) on ``pip install -e .`` in an environment like a GPU
    machine's (torch 2.11.0+cu130, timm requiring torchvision, numpy 2), from an index of stub wheels."""
    env_dir = tmp_path / 'venv'
    run([sys.executable, '-m', 'venv', '--without-pip', str(env_dir)], timeout=60)
    site = Path(glob.glob(f'{env_dir}/lib/python3*/site-packages')[0])
    for name, (version, requires) in INSTALLED.items():
        _stub_distribution(site, name, version, requires)
    if torchvision:
        _stub_distribution(site, 'torchvision', torchvision, ('torch==2.11.0',))
    index = tmp_path / 'index'
    index.mkdir()
    for name, version, requires in INDEX:
        _stub_wheel(index, name, version, requires)
    # The build backend (no build isolation: offline), from this suite's venv.
    import setuptools
    backend, ours = tmp_path / 'backend', Path(setuptools.__file__).parents[1]
    backend.mkdir()
    for path in [ours / 'setuptools', ours / 'pkg_resources', ours / '_distutils_hack', *ours.glob('setuptools-*.dist-info')]:
        (backend / path.name).symlink_to(path)
    (site / 'build_backend.pth').write_text(f'{backend}\n')
    report = tmp_path / 'report.json'
    args = _readme_install_command() if command == 'readme' else command
    run([sys.executable, '-m', 'pip', '--python', str(env_dir / 'bin' / 'python'), 'install', '--dry-run', '--quiet',
         '--no-index', '--find-links', str(index), '--no-build-isolation', '--report', str(report), *args],
        timeout=180, cwd=ROOT)
    installs = json.loads(report.read_text())['install']
    assert {item['metadata']['name']: item['metadata']['version'] for item in installs} == expected


def test_gpu_check_dry_run_lists_its_parts_within_nine_minutes():
    out = run(['bash', 'scripts/gpu_check.sh', '--dry-run'], timeout=30, cwd=ROOT).stdout
    budget = int(re.search(r'within (\d+) s together', out).group(1))
    parts = re.findall(r'^  (\S+) +(\d+) s  ', out, flags=re.M)
    assert [name for name, _ in parts] == ['setup', 'cuda-vs-cpu', 'autocast', 'benchmark', 'benchmark-compile',
                                           'mmcv-ops', 'train']
    head, optional = out.split('in the time left')
    assert budget < 9 * 60 and sum(int(limit) for _, limit in re.findall(r'^  (\S+) +(\d+) s', head, re.M)) <= budget
    assert 'mmcv-ops' in optional and 'train' in optional


@pytest.mark.slow
def test_gpu_check_rehearsal_on_cpu(tmp_path):
    """scripts/prepare_gpu_wheels.sh, then scripts/gpu_check.sh in a fresh Python 3.12 venv that holds
    only what the GPU machine has (installed with --no-index from a local wheel cache): the carried
    wheels fit in 64 MiB, they install, LaPEViT imports and runs, every CUDA part is skipped."""
    python = find_python('3.12')
    if python is None:
        pytest.skip('no python3.12 here (pyenv install 3.12)')
    cache = Path(os.environ.get('LAPE_MM_CACHE', os.path.expanduser('~/.cache/lape_mm'))) / 'gpu-image-py312'
    complete = cache / 'complete'  # holds the GPU_IMAGE it was made for
    if not complete.exists() or complete.read_text() != ' '.join(GPU_IMAGE):  # from the registry, once per image
        run([sys.executable, '-m', 'pip', 'download', '--quiet', '--no-deps', *WHEEL_TARGET, '-d', str(cache),
             *GPU_IMAGE], timeout=600)
        complete.write_text(' '.join(GPU_IMAGE))
    wheels = tmp_path / 'whl'
    prepared = run(['bash', 'scripts/prepare_gpu_wheels.sh', str(wheels)], timeout=300, cwd=ROOT,
                   env={**os.environ, 'PYTHON': sys.executable})
    assert sum(f.stat().st_size for f in wheels.iterdir()) <= 64 * 2**20, prepared.stdout

    venv = tmp_path / 'gpu-machine'
    run([python, '-m', 'venv', str(venv)], timeout=120)
    vpython = str(venv / 'bin' / 'python')
    run([vpython, '-m', 'pip', 'install', '--quiet', '--no-index', '--no-deps', '--no-compile', '--find-links', str(cache),
         *[spec.split('=')[0].split('>')[0] for spec in GPU_IMAGE]], timeout=300)
    (venv / 'lib' / 'python3.12' / 'site-packages' / 'nvidia').symlink_to(Path(torch.__file__).parents[1] / 'nvidia')

    check = tmp_path / 'check'
    # The parts' limits are for the GPU machine's 16 cores: 10x on this CPU, which may be shared.
    out = run(['bash', 'scripts/gpu_check.sh'], timeout=900, cwd=ROOT,
              env={**os.environ, 'PYTHON': vpython, 'WHEELS': str(wheels), 'GPU_CHECK_DIR': str(check),
                   'GPU_CHECK_SCALE': '10', 'PYTHONPATH': ''}).stdout
    rows = [line for line in (check / 'summary.md').read_text().splitlines() if line.startswith('| ') and
            not line.startswith('| part')]
    results = {row.split('|')[1].strip(): row.split('|')[2].strip() for row in rows}
    assert results.pop('setup') == 'passed', out
    assert 'LaPEViT-T on the CPU' in out and 'Python 3.12' in out
    assert results and all(r.startswith('skipped: ') for r in results.values()), results
