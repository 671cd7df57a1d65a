from .block import LaPEBlock, PENormalizer
from .pos_embed import PE_TYPES, build_fixed_pos_embed, infer_grid, resize_pos_embed
from .rope import ROPE_TYPES, build_rope, init_rope, rope_embed
from .weight_cast import AutocastWeightCache
from .window import window_partition, window_unpartition

__all__ = ['AutocastWeightCache', 'LaPEBlock', 'PENormalizer', 'PE_TYPES', 'ROPE_TYPES', 'build_fixed_pos_embed',
           'build_rope', 'infer_grid', 'init_rope', 'resize_pos_embed', 'rope_embed', 'window_partition',
           'window_unpartition']
