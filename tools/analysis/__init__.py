"""Analysis of LaPE models: PE similarity figures, speed/memory benchmark, FLOPs, ONNX export.

Only light modules are imported here; matplotlib, onnx and the benchmark load on use.
"""
from .pe_similarity import (layer_pos_embeds, layer_similarity_matrix, pe_caption, save_figures,
                            token_similarity_maps)

__all__ = ['layer_pos_embeds', 'layer_similarity_matrix', 'pe_caption', 'save_figures',
           'token_similarity_maps']
