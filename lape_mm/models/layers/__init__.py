from .block import LaPEBlock, PENormalizer
from .pos_embed import PE_TYPES, build_fixed_pos_embed, infer_grid, resize_pos_embed
from .weight_cast import AutocastWeightCache
from .window import window_partition, window_unpartition

__all__ = ['AutocastWeightCache', 'LaPEBlock', 'PENormalizer', 'PE_TYPES', 'build_fixed_pos_embed', 'infer_grid',
           'resize_pos_embed', 'window_partition', 'window_unpartition']
