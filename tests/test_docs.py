"""The docs are claims: every shell command in README.md and docs/*.md is either run here (those that
finish in seconds: the tiny-data makers and the converters) or listed as not run, with why; every
option a documented command passes to a tool is one the tool's --help lists; every ``lape_mm.*``
name imports, every repository path, config and make target the docs name exists, and every
section that states a measured figure names the commit it was measured at, a commit of this
repository.

Commands run in this process (``run_main``), in a scratch folder that links the repository's code
and configs, so that what they write (``data/``, ``work_dirs/``, ``pretrain/``) stays out of the
checkout. A command with a placeholder (an upper-case word such as CONFIG, ``[--option]``) cannot
run as written; long ones (training, the benchmark, ``make``) are covered by their own tests.
"""
from __future__ import annotations

import importlib
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_main, tiny_vit_kwargs

DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
SHELL_LANGUAGES = {'bash', 'sh', 'shell', 'console'}
FENCE = re.compile(r'^```([\w-]*)[^\n]*\n(.*?)^```', re.M | re.S)
OPERATORS = {'&&', '||', ';', '|'}
INLINE_TOOL = re.compile(r'`((?:python tools/\w+\.py|tools/\w+\.(?:py|sh) )[^`]*)`')  # a command, not a path

# Programs whose documented commands are not run here, and why (a new one must be added consciously).
LONG = {
    'make': 'sets up .venv and trains, or runs the whole suite',
    'pip': 'installs from the network',
    'git': "a developer's set-up step of a measurement",
    'tools/train.py': 'trains (tests/tools/test_segmentation.py and the other end-to-end tests run it on tiny data)',
    'tools/test.py': 'evaluates a trained checkpoint (end-to-end tests)',
    'tools/dist_train.sh': 'multi-process training (tests/tools/test_multiprocess.py)',
    'tools/dist_test.sh': 'multi-process evaluation',
    'tools/slurm_train.sh': 'needs a Slurm cluster',
    'tools/slurm_test.sh': 'needs a Slurm cluster',
    'tools/benchmark.py': 'minutes of timing (tests/tools/test_analysis.py runs it at toy sizes)',
    'tools/reproduce.py': 'the full studies take 30 and 55 minutes; --quick is tests/tools/test_pretrain.py',
    'tools/demo.py': 'trains for minutes (`make demo`)',
    'tools/get_flops.py': 'a ViT-B UPerNet at 512x512 takes minutes on 2 cores (tests/tools/test_analysis.py: '
                          'the tiny one)',
    'tools/visualize_pe.py': 'two ViT-B backbones take half a minute (tests/tools/test_analysis.py: tiny ones)',
    'scripts/prepare_gpu_wheels.sh': 'downloads wheels from the registry (tests/test_install.py runs it)',
    'scripts/gpu_check.sh': 'runs on a GPU machine (tests/test_install.py: --dry-run, and a CPU rehearsal)',
    'scripts/local_slurm.sh': 'starts a Slurm cluster as root (tests/tools/test_slurm.py)',
    'export': 'points the Slurm commands after it at that cluster (tests/tools/test_slurm.py)',
    'printf': 'writes the batch script of the sbatch command after it (tests/tools/test_slurm.py)',
    'sbatch': 'needs a Slurm cluster (tests/tools/test_slurm.py)',
}
# Programs whose documented commands are run here when they have no placeholder.
FAST = ('tools/make_tiny_ade.py', 'tools/make_tiny_coco.py', 'tools/make_tiny_imagenet.py',
        'tools/convert_checkpoint.py')
# The launchers pass their extra arguments on to these tools.
LAUNCHED = {'tools/dist_train.sh': 'tools/train.py', 'tools/slurm_train.sh': 'tools/train.py',
            'tools/dist_test.sh': 'tools/test.py', 'tools/slurm_test.sh': 'tools/test.py'}
# Where the docs name files the user makes (outputs, downloads), not files of the repository.
USER_FOLDERS = ('work_dirs/', 'data/', 'pretrain/')


@dataclass(frozen=True)
class Command:
    text: str
    doc: str

    @property
    def words(self) -> list[str]:
        words = shlex.split(self.text)
        while words and re.fullmatch(r'[A-Z_][A-Z0-9_]*=.*', words[0], re.S):  # VAR=value prefixes
            words = words[1:]
        return words

    @property
    def program(self) -> str:
        words = self.words or ['']
        return words[1] if words[0] == 'python' and len(words) > 1 else words[0]

    @property
    def has_placeholder(self) -> bool:
        return any(re.fullmatch(r'[A-Z][A-Z0-9_]+|\[.*|.*\]|\.\.\.', w) for w in self.words)


def shell_commands(text: str, doc: str) -> list[Command]:
    """The commands of the shell code blocks: continuation lines joined, comments dropped, and
    ``a && b`` / ``a; b`` split into one command each."""
    commands = []
    for language, body in FENCE.findall(text):
        if language not in SHELL_LANGUAGES:
            continue
        for line in body.replace('\\\n', ' ').splitlines():
            words = shlex.split(line, comments=True)
            starts = [0] + [i + 1 for i, w in enumerate(words) if w in OPERATORS]
            for start, end in zip(starts, [i for i, w in enumerate(words) if w in OPERATORS] + [len(words)]):
                command = Command(shlex.join(words[start:end]), doc)
                if command.words:  # not a bare VAR=value assignment
                    commands.append(command)
    return commands


def _read(doc: Path) -> str:
    return doc.read_text()


COMMANDS = [c for doc in DOCS for c in shell_commands(_read(doc), doc.name)]
TO_RUN = sorted({c.text for c in COMMANDS if c.program in FAST and not c.has_placeholder})


def test_docs_show_commands():
    assert len(COMMANDS) > 20 and TO_RUN, 'the docs parser found no commands: is the fence syntax still ```bash?'


def test_every_command_is_run_or_listed_as_not_run():
    unknown = [f'{c.doc}: {c.text}' for c in COMMANDS
               if c.program not in FAST and c.program not in LONG and not c.has_placeholder]
    assert not unknown, ('commands neither run nor listed as long in tests/test_docs.py (add the program '
                         'to FAST or LONG):\n' + '\n'.join(unknown))


def test_code_blocks_without_a_language_hold_no_commands():
    """A command in an unlabelled block would escape this check: label shell blocks ```bash."""
    hidden = [f'{doc.name}: {line}' for doc in DOCS for language, body in FENCE.findall(_read(doc))
              if not language for line in body.splitlines()
              if re.match(r'\s*(python |make |tools/|\./tools/|pip )', line)]
    assert not hidden, '\n'.join(hidden)


def test_make_targets_exist():
    """Every `make X` of a code block or of the text is a target of the Makefile."""
    makefile = (ROOT / 'Makefile').read_text()
    targets = {c.words[1] for c in COMMANDS if c.program == 'make'}
    targets |= {t for doc in DOCS for t in re.findall(r'`make ([\w-]+)', _read(doc))}
    missing = sorted(t for t in targets if not re.search(rf'^{re.escape(t)}:', makefile, re.M))
    assert targets and not missing, f'the docs name make targets the Makefile lacks: {missing}'


@pytest.mark.parametrize('doc', DOCS, ids=lambda doc: doc.name)
def test_python_blocks_compile(doc):
    """The ```python blocks (config snippets, scripts) are valid Python."""
    for language, body in FENCE.findall(_read(doc)):
        if language == 'python':
            compile(body, doc.name, 'exec')


# ---------------------------------------------------------------- options against --help
def _documented_tool_uses() -> dict[str, set[str]]:
    """``tools/X.py`` -> the options the docs pass it (code blocks and inline code), launchers'
    options counted for the tool they launch."""
    uses: dict[str, set[str]] = {}
    texts = [c.text for c in COMMANDS] + [m for doc in DOCS for m in INLINE_TOOL.findall(_read(doc))]
    for text in texts:
        match = re.search(r'(tools/\w+\.(?:py|sh))', text)
        if match:
            tool = LAUNCHED.get(match.group(1), match.group(1))
            uses.setdefault(tool, set()).update(re.findall(r'(?<![\w-])--[a-z][\w-]*', text[match.end():]))
    for tool in {t for doc in DOCS for t in re.findall(r'\btools/\w+\.py\b', _read(doc))}:
        if (ROOT / tool).is_file() and "if __name__ == '__main__':" in (ROOT / tool).read_text():
            uses.setdefault(tool, set())  # an entry point the docs only name: its --help runs
    return uses


TOOL_USES = _documented_tool_uses()


@pytest.mark.parametrize('tool', sorted(TOOL_USES))
def test_documented_options_are_in_the_tools_help(tool):
    assert (ROOT / tool).is_file(), f'the docs name {tool}, which does not exist'
    help_text = run_main(tool, '--help')
    missing = sorted(o for o in TOOL_USES[tool] if not re.search(rf'{re.escape(o)}\b', help_text))
    assert not missing, f'the docs pass {missing} to {tool}, whose --help does not list them'


@pytest.mark.parametrize('launcher', sorted({c.program for c in COMMANDS if c.program.endswith('.sh')}))
def test_documented_launchers_exist_and_are_executable(launcher):
    path = ROOT / launcher
    assert path.is_file() and path.stat().st_mode & 0o111, f'{launcher} is missing or not executable'


# ---------------------------------------------------------------- running the fast commands
def _fake_training_checkpoint(path: Path) -> None:
    """What configs/pretrain writes, as far as the converter reads it: mmpretrain classifier keys."""
    from lape_mm import LaPEViT
    backbone = LaPEViT(**tiny_vit_kwargs(embed_dims=192, num_heads=3, num_layers=2, img_size=224))
    state_dict = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state_dict['head.layers.head.weight'] = torch.zeros(1000, 192)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': state_dict, 'meta': {'epoch': 300}}, path)


@pytest.fixture
def scratch_checkout(tmp_path, monkeypatch):
    """A folder that sees the repository's code and configs; the commands' outputs land in it."""
    for name in ('configs', 'tools', 'lape_mm'):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize('command', TO_RUN, ids=TO_RUN)
def test_fast_command_runs(command, scratch_checkout):
    words = Command(command, '').words
    assert words[0] == 'python', command
    if words[1] == 'tools/convert_checkpoint.py':
        _fake_training_checkpoint(scratch_checkout / words[2])
    run_main(words[1], *words[2:])
    for previous, word in zip(words[1:], words[2:]):  # what it was told to write is there
        if word.startswith(USER_FOLDERS) or previous == '--out':
            assert (scratch_checkout / word).exists(), f'{command} did not write {word}'


# ---------------------------------------------------------------- names and paths
def _dotted_names() -> set[str]:
    return {m for doc in DOCS for m in re.findall(r'\blape_mm(?:\.\w+)+', _read(doc))}


@pytest.mark.parametrize('name', sorted(_dotted_names()))
def test_documented_lape_mm_names_import(name):
    parts = name.split('.')
    for split in range(len(parts), 0, -1):  # the longest importable module, then attributes
        try:
            obj = importlib.import_module('.'.join(parts[:split]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute, None)
            assert obj is not None, f'{name}: {".".join(parts[:split])} has no {attribute}'
        return
    pytest.fail(f'{name} does not import')


def _expand_braces(path: str) -> list[str]:
    match = re.search(r'\{([^{}]*)\}', path)
    if not match:
        return [path]
    return [p for option in match.group(1).split(',')
            for p in _expand_braces(path[:match.start()] + option + path[match.end():])]


REPO_PATH = re.compile(r'(?<![\w/.~-])((?:lape_mm|tools|configs|tests|scripts|docs)/[\w./{},*-]*[\w*}/])')
# Paths inside the package, as docs/architecture.md writes them (`models/layers/block.py`).
PACKAGE_PATH = re.compile(r'(?:models|engine|checkpoint)/[\w./{},*-]+')
# Config names without their folder and extension, as tables write them (`upernet_lape_vit_b`),
# and globs over the config names (`*tiny-ade*`).
CONFIG_NAME = re.compile(r'(?:pretrain/)?(?:upernet|segmenter|mask_rcnn|lape_deit)_[\w{},*-]+(?:\.py)?'
                         r'|\*[\w{},*-]+\*?(?:\.py)?')
UPSTREAM_CONFIG = re.compile(r'(mmseg|mmdet|mmpretrain)::([\w/.{},*-]+\.py)')


def _exists(path: str) -> bool:
    return any(ROOT.glob(path)) if '*' in path else (ROOT / path).exists()


def _inline_tokens(text: str) -> list[str]:
    """The words of the inline code spans, without the punctuation around them."""
    return [token.strip('(),;:').rstrip('.') for span in re.findall(r'`([^`\n]+)`', text) for token in span.split()]


def _missing(names: list[str], where) -> list[str]:
    return sorted({name for name in names if not all(_exists(where(path)) for path in _expand_braces(name))})


@pytest.mark.parametrize('doc', DOCS, ids=lambda doc: doc.name)
def test_documented_repository_paths_exist(doc):
    """Every `lape_mm/...`, `tools/...`, `configs/...`, `tests/...`, `scripts/...` or `docs/...` path
    in the text (with ``{a,b}`` alternatives and ``*`` globs), every package path in inline code
    (`engine/rng_state_hook.py`) and every relative link names files that exist."""
    text = _read(doc)
    missing = _missing(REPO_PATH.findall(text), lambda path: path)
    missing += _missing([t for t in _inline_tokens(text) if PACKAGE_PATH.fullmatch(t)], lambda path: f'lape_mm/{path}')
    prose = FENCE.sub('', text)
    links = [link for link in re.findall(r'\]\(([^)#\s]+)', prose) if not re.match(r'\w+://', link)]
    missing += _missing(links, lambda path: str((doc.parent / path).relative_to(ROOT)))
    assert not missing, f'{doc.name} names paths that do not exist: {missing}'


def _config_path(name: str) -> str:
    """`upernet_lape_vit_b` -> `configs/upernet_lape_vit_b.py`; `*tiny-ade*` -> `configs/**/*tiny-ade*.py`."""
    if '*' not in name:
        return f'configs/{name.removesuffix(".py")}.py'
    return f'configs/**/{name}' if name.endswith('.py') else f'configs/**/{name.rstrip("*")}*.py'


@pytest.mark.parametrize('doc', DOCS, ids=lambda doc: doc.name)
def test_documented_configs_exist(doc):
    """Config names written without `configs/` (`upernet_lape_vit_b`, `pretrain/lape_deit_base_in1k`,
    `*tiny-coco*`) name configs of this repository; `mmseg::...py` names a config of that package."""
    names = [t for t in _inline_tokens(doc.read_text()) if CONFIG_NAME.fullmatch(t) and not t.endswith('.pth')]
    missing = _missing(names, _config_path)
    for package, path in UPSTREAM_CONFIG.findall(doc.read_text()):
        mim = Path(importlib.import_module(package).__file__).parent / '.mim' / 'configs'
        missing += [f'{package}::{p}' for p in _expand_braces(path) if not (mim / p).is_file()]
    assert not missing, f'{doc.name} names configs that do not exist: {missing}'


# ---------------------------------------------------------------- figures carry their commit
COMMIT = re.compile(r'\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b')
# A measured figure: a time, memory size or throughput with its unit, a ratio to timm, mmseg or the
# add twin, or an accuracy (`mIoU 80.48`).
FIGURE = re.compile(r'\b\d[\d.,]*\s?(?:ms|min|minutes|MiB|GiB|GFLOP/s|GFLOPs)\b'
                    r'|\b\d[\d.]*x (?:timm|mmseg|the add|add)\b|\b(?:mIoU|top-1|top-5|box AP|mask AP)\s+\d')


def _sections(text: str) -> list[str]:
    """The sections of a markdown text (each heading with the text up to the next), code blocks left out."""
    return re.split(r'^(?=#+ )', FENCE.sub('', text), flags=re.M)


@pytest.mark.parametrize('doc', DOCS, ids=lambda doc: doc.name)
def test_measured_figures_name_their_commit(doc):
    """Every figure carries the commit it was measured at (the developers' guide), checked per section:
    a section that states a measured figure names a commit (`measured at 68bae08 on ...`)."""
    bare = [section.splitlines()[0] for section in _sections(_read(doc))
            if FIGURE.search(section) and not COMMIT.search(section)]
    assert not bare, (f'{doc.name}: sections with measured figures but no commit (name the commit and the '
                      f'machine each figure was measured on): {bare}')


def test_named_commits_exist():
    """The commits the docs name are commits of this repository (a typo'd hash labels nothing)."""
    git = shutil.which('git')
    if git is None or not (ROOT / '.git').exists():
        pytest.skip('not a git checkout')
    if subprocess.run([git, 'rev-parse', '--is-shallow-repository'], cwd=ROOT, capture_output=True,
                      text=True).stdout.strip() != 'false':
        pytest.skip('a shallow clone lacks the older commits')
    names = sorted({h for doc in DOCS for h in COMMIT.findall(_read(doc))})
    found = subprocess.run([git, 'cat-file', '--batch-check'], cwd=ROOT, capture_output=True, text=True, check=True,
                           input=''.join(f'{h}^{{commit}}\n' for h in names)).stdout.splitlines()
    missing = [line.split()[0].removesuffix('^{commit}') for line in found if line.endswith(' missing')]
    assert names and not missing, f'the docs name commits this repository does not have: {missing}'
