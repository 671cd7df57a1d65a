# LaPE-DeiT-B/16 on ImageNet-1K: the DeiT recipe at DeiT-B width, 16 GPUs x 64 (batch 1024, same lr).
# No EMA of the weights: DeiT evaluates the raw model, as the LaPE paper's numbers do.
_base_ = './lape_deit_tiny_in1k.py'
model = dict(backbone=dict(arch='base'), head=dict(in_channels=768))
train_dataloader = dict(batch_size=64)
