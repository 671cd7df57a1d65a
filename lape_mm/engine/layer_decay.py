"""Layer-wise learning-rate decay for LaPEViT in mmseg and mmdet configs.

mmseg's ``LearningRateDecayOptimizerConstructor`` knows only ConvNeXt/BEiT/MAE backbones by class name and
mmdet's only ConvNeXt, so neither fits LaPEViT's ``blocks.{i}`` layout."""
import re

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from timm.optim import param_groups_weight_decay

# As DeiT: no weight decay on the PE and the cls token (and, by timm's rule, on norms and biases); as
# RoPE-ViT, none on the mixed RoPE frequencies.
NO_WEIGHT_DECAY = ('pos_embed', 'cls_token', 'rope.freqs', '*.pos_embed', '*.cls_token', '*.rope.freqs')


def vit_layer_id(param_name: str, num_layers: int) -> int:
    """0 for the embeddings, i + 1 for ``backbone.blocks.{i}``, num_layers + 1 for the rest."""
    if param_name.startswith(('backbone.cls_token', 'backbone.pos_embed', 'backbone.patch_embed', 'backbone.rope.')):
        return 0
    if match := re.match(r'backbone\.blocks\.(\d+)\.', param_name):
        return int(match.group(1)) + 1
    return num_layers + 1


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """lr of layer ``i`` = base_lr * layer_decay_rate ** (num_layers + 1 - i); no weight decay on norms,
    biases, ``pos_embed`` and ``cls_token``. ``paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65)``;
    ``num_layers`` defaults to the backbone's depth."""

    def add_params(self, params: list, module: nn.Module, **kwargs) -> None:
        num_layers = self.paramwise_cfg.get('num_layers') or len(module.backbone.blocks)
        decay_rate = self.paramwise_cfg.get('layer_decay_rate', 1.0)
        names = {id(param): name for name, param in module.named_parameters()}
        groups: dict[tuple[int, bool], dict] = {}
        for decay_group in param_groups_weight_decay(module, self.base_wd, no_weight_decay_list=NO_WEIGHT_DECAY):
            no_decay = decay_group['weight_decay'] == 0.
            for param in decay_group['params']:
                layer_id = vit_layer_id(names[id(param)], num_layers)
                group = groups.setdefault((layer_id, no_decay), dict(
                    params=[], lr=self.base_lr * decay_rate ** (num_layers + 1 - layer_id),
                    weight_decay=decay_group['weight_decay'], layer_id=layer_id))
                group['params'].append(param)
        params.extend(groups[key] for key in sorted(groups))
        print_log(f'layer-wise lr decay {decay_rate} over {num_layers} layers: {len(groups)} param groups',
                  logger='current')
