# upernet_lape_vit_t_tiny-ade_128x128.py trained with FSDP (configs/_base_/fsdp.py): the CPU-sized
# twin of upernet_lape_vit_l_fsdp_ade20k.py. `tools/dist_train.sh CONFIG 2` runs two CPU processes
# over gloo; its checkpoints are plain state dicts that the non-FSDP config evaluates too.
_base_ = ['./upernet_lape_vit_t_tiny-ade_128x128.py', './_base_/fsdp.py']
