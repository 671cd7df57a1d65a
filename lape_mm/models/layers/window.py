"""ViTDet-style window partitioning of a token grid, padding to whole windows."""
import torch
import torch.nn.functional as F

from .pos_embed import is_exporting


def window_partition(x: torch.Tensor, window_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split ``[B, H, W, C]`` into ``[B * nW, ws * ws, C]`` windows, zero-padding H and W up.

    Returns the windows and the padded grid ``(Hp, Wp)`` that :func:`window_unpartition` needs.
    """
    B, H, W, C = x.shape
    pad_h, pad_w = (-H) % window_size, (-W) % window_size
    if pad_h or pad_w or is_exporting():  # exported: the padding depends on the input size
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window_size, window_size, Wp // window_size, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, C)
    return windows, (Hp, Wp)


def window_unpartition(windows: torch.Tensor, window_size: int, padded_hw: tuple[int, int],
                       hw: tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``[B * nW, ws * ws, C]`` back to ``[B, H, W, C]``."""
    (Hp, Wp), (H, W) = padded_hw, hw
    C = windows.shape[-1]
    x = windows.view(-1, Hp // window_size, Wp // window_size, window_size, window_size, C)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, Hp, Wp, C)
    if (Hp, Wp) != (H, W) or is_exporting():
        return x[:, :H, :W].contiguous()
    return x
