from .infer import detect_image, save_colour_mask, segment_image

__all__ = ['detect_image', 'save_colour_mask', 'segment_image']
