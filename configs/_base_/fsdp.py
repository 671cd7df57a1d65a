# Fully sharded data parallel: mmengine's FlexibleRunner with lape_mm's FSDP2Strategy (torch FSDP2
# `fully_shard`), one sharding unit per LaPEBlock plus the rest of the model as the root unit. Each
# block's pe_norm is a unit of its own: LaPEViT runs it between blocks, outside the block's forward.
# tools/train.py builds the runner `runner_type` names; checkpoints hold full (unsharded) state dicts.
runner_type = 'FlexibleRunner'
strategy = dict(type='FSDP2Strategy', shard_modules=('LaPEBlock.pe_norm', 'LaPEBlock'))
