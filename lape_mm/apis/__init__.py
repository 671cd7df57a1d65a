from .segment import save_colour_mask, segment_image

__all__ = ['save_colour_mask', 'segment_image']
