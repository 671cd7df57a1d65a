"""Foreign checkpoint key layouts to lape_mm's native one (timm/DeiT/LaPE authors), one function per format.

:func:`to_lape_state_dict` detects the format. Pure renaming: fitting to a model is in its ``checkpoint_fit``."""
import ast
import json
import re
from collections.abc import Mapping

import torch
from mmengine.logging import print_log

from ..errors import CheckpointError

StateDict = dict[str, torch.Tensor]
CONTAINER_KEYS = ('state_dict', 'model', 'module')
STRIPPED_PREFIXES = ('module.', 'backbone.', 'encoder.')
MMPRETRAIN_CLS_HEAD = 'head.layers.head.'  # the linear layer of mmpretrain's VisionTransformerClsHead


def _rename(state_dict: StateDict, rules: list[tuple[str, str]]) -> StateDict:
    for pattern, repl in rules:
        state_dict = {re.sub(pattern, repl, key): value for key, value in state_dict.items()}
    return state_dict


def convert_timm(state_dict: StateDict) -> StateDict:
    """timm / DeiT / LaPE authors: the authors' per-block PEs ``pos_embed{i}`` are stacked into one
    ``[L, 1 + N, C]``, their 2-D '1D_sin' table gets its leading dim, and a distilled DeiT's
    ``dist_token`` (and its PE slot) is dropped, and named in the log."""
    state_dict = dict(state_dict)
    per_block = sorted((k for k in state_dict if re.fullmatch(r'pos_embed\d+', k)), key=lambda k: int(k[9:]))
    if per_block:
        state_dict['pos_embed'] = torch.cat([state_dict.pop(k) for k in per_block])
    if 'pos_embed' in state_dict and state_dict['pos_embed'].dim() == 2:
        state_dict['pos_embed'] = state_dict['pos_embed'][None]
    if state_dict.pop('dist_token', None) is not None:
        pe = state_dict['pos_embed']
        state_dict['pos_embed'] = torch.cat([pe[:, :1], pe[:, 2:]], dim=1)
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith('head_dist.')}
        print_log('distilled DeiT: dist_token, its pos_embed slot and head_dist.* not loaded (LaPEViT has no '
                  'distillation token)', logger='current')
    return state_dict


OPENMMLAB_RULES = [
    (r'^patch_embed\.projection\.', 'patch_embed.proj.'),
    (r'^layers\.(\d+)\.ln1\.', r'blocks.\1.norm1.'),
    (r'^layers\.(\d+)\.ln2\.', r'blocks.\1.norm2.'),
    (r'^layers\.(\d+)\.ffn\.layers\.0\.0\.', r'blocks.\1.mlp.fc1.'),
    (r'^layers\.(\d+)\.ffn\.layers\.1\.', r'blocks.\1.mlp.fc2.'),
    (r'^ln1\.', 'norm.'),
    # mmseg: nn.MultiheadAttention, whose in_proj packs q, k, v as timm's qkv does
    (r'^layers\.(\d+)\.attn\.attn\.in_proj_(weight|bias)$', r'blocks.\1.attn.qkv.\2'),
    (r'^layers\.(\d+)\.attn\.attn\.out_proj\.', r'blocks.\1.attn.proj.'),
    (r'^layers\.(\d+)\.attn\.(qkv|proj)\.', r'blocks.\1.attn.\2.'),  # mmpretrain
]


def convert_openmmlab_vit(state_dict: StateDict) -> StateDict:
    """mmseg and mmpretrain ``VisionTransformer`` (:func:`unwrap` moved mmpretrain's head to ``head.*``).
    Their patch projection is bias-free by default: a zero bias is the same layer."""
    state_dict = _rename(state_dict, OPENMMLAB_RULES)
    weight = state_dict.get('patch_embed.proj.weight')
    if weight is not None and 'patch_embed.proj.bias' not in state_dict:
        state_dict['patch_embed.proj.bias'] = weight.new_zeros(weight.shape[0])
    return state_dict


def convert_vit_adapter(state_dict: StateDict) -> StateDict:
    """ViT-Adapter (czczup/ViT-Adapter or lape_mm's): layer scale ``gamma{1,2}`` is timm's
    ``ls{1,2}.gamma``; the original's ConvFFN nests its depth-wise conv one level deeper."""
    return _rename(state_dict, [
        (r'^blocks\.(\d+)\.gamma([12])$', r'blocks.\1.ls\2.gamma'),
        (r'\.ffn\.dwconv\.dwconv\.', '.ffn.dwconv.'),
    ])


def convert_rope_vit(state_dict: StateDict) -> StateDict:
    """naver's RoPE-ViT (DeiT-III with RoPE), in its own layout or timm's (``vit_*_patch16_rope*_224``):
    layer scale ``gamma_{1,2}`` is ``ls{1,2}.gamma``, the original's mixed frequencies ``freqs`` are
    ``rope.freqs`` (its grid buffers ``freqs_t_{x,y}`` are rebuilt per input), and the PE of the 'ape'
    models, which has no cls slot, gets a zero one (adding zero to the cls token is what naver does)."""
    state_dict = _rename(state_dict, [(r'^blocks\.(\d+)\.gamma_([12])$', r'blocks.\1.ls\2.gamma'),
                                      (r'^freqs$', 'rope.freqs')])
    state_dict = {k: v for k, v in state_dict.items() if k not in ('freqs_t_x', 'freqs_t_y')}
    if (pe := state_dict.get('pos_embed')) is not None:
        state_dict['pos_embed'] = torch.cat([pe.new_zeros(pe.shape[0], 1, pe.shape[2]), pe], dim=1)
    return state_dict


def unwrap(checkpoint: Mapping, prefix: str | None = None) -> StateDict:
    """The tensors of a checkpoint file: inside ``state_dict``/``model``, without wrapper prefixes."""
    state_dict = next((checkpoint[k] for k in CONTAINER_KEYS if isinstance(checkpoint.get(k), Mapping)), checkpoint)
    if prefix:
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if not state_dict:
            raise CheckpointError(f'no key in the checkpoint starts with prefix={prefix!r}')
    for strip in STRIPPED_PREFIXES:
        if state_dict and all(k.startswith(strip) for k in state_dict):
            state_dict = {k[len(strip):]: v for k, v in state_dict.items()}
    # A full classifier/segmentor/detector checkpoint: keep its backbone, and an mmpretrain
    # classifier's linear head under timm's name, so timm users keep the pretrained classifier.
    if any(k.startswith('backbone.') for k in state_dict):
        head = {'head.' + k[len(MMPRETRAIN_CLS_HEAD):]: v for k, v in state_dict.items()
                if k.startswith(MMPRETRAIN_CLS_HEAD)}
        state_dict = {k[len('backbone.'):]: v for k, v in state_dict.items() if k.startswith('backbone.')}
        state_dict.update(head)
    return dict(state_dict)


def detect_format(state_dict: StateDict) -> str:
    """'vit_adapter', 'rope_vit' (naver's), 'timm' (timm, DeiT, LaPE authors, lape_mm), 'mmseg' or 'mmpretrain'."""
    if any(k.startswith(('spm.', 'interactions.')) for k in state_dict):
        return 'vit_adapter'
    if any(re.fullmatch(r'blocks\.\d+\.gamma_[12]', k) for k in state_dict):
        return 'rope_vit'
    if any(k.startswith('blocks.') for k in state_dict):
        return 'timm'
    if any(re.match(r'layers\.\d+\.attn\.attn\.in_proj_weight', k) for k in state_dict):
        return 'mmseg'
    if any(re.match(r'layers\.\d+\.attn\.qkv\.weight', k) for k in state_dict):
        return 'mmpretrain'
    sample = ', '.join(sorted(state_dict)[:5])
    raise CheckpointError(f'unrecognised checkpoint format (first keys: {sample}); supported: timm/DeiT, '
                          f'LaPE authors, RoPE-ViT, mmseg and mmpretrain VisionTransformer, ViT-Adapter, lape_mm')


CONVERTERS = {'vit_adapter': convert_vit_adapter, 'rope_vit': convert_rope_vit, 'timm': convert_timm,
              'mmseg': convert_openmmlab_vit, 'mmpretrain': convert_openmmlab_vit}


def to_lape_state_dict(checkpoint: Mapping, prefix: str | None = None) -> tuple[StateDict, str]:
    """Detect the format of a loaded checkpoint and convert it to native keys."""
    state_dict = unwrap(checkpoint, prefix)
    fmt = detect_format(state_dict)
    return CONVERTERS[fmt](state_dict), fmt


def saved_patch_grid(checkpoint: Mapping) -> tuple[int, int] | None:
    """The PE grid a checkpoint was trained at: ``meta['pos_embed_grid']`` (tools/convert_checkpoint.py; JSON
    text in a safetensors file's string metadata), or ``img_size // patch_size`` of the LaPE backbone in
    mmengine's ``meta['cfg']`` text (parsed, never run)."""
    meta = checkpoint.get('meta')
    if not isinstance(meta, Mapping):
        return None
    if (grid := meta.get('pos_embed_grid')) is not None:
        return tuple(int(s) for s in (json.loads(grid) if isinstance(grid, str) else grid))
    try:
        for call in (node for node in ast.walk(ast.parse(meta.get('cfg'))) if isinstance(node, ast.Call)):
            fields = {kw.arg: kw.value for kw in call.keywords if kw.arg}
            if str(getattr(fields.get('type'), 'value', '')).startswith('LaPEViT'):
                size = ast.literal_eval(fields['img_size']) if 'img_size' in fields else 224
                patch = ast.literal_eval(fields['patch_size']) if 'patch_size' in fields else 16
                h, w = (size, size) if isinstance(size, int) else size
                return h // patch, w // patch
    except (TypeError, SyntaxError, ValueError):  # no cfg text, or a value that is not a literal
        pass
    return None
