"""Show that the suite catches bugs: ``make test-mutants`` (not part of ``make test``).

Each mutant is one small, plausible bug: a replacement of one exact piece of source text. In a scratch
copy of the repository each is applied alone, the non-slow tests named for it run (``pytest -x``), and
at least one of them must fail. Before that, the same tests must pass on the unmutated copy, so a
failure means the mutant was caught, not that the copy was broken. Prints a table; exits 1 if a mutant
survives, its text is no longer in the source (the list is stale) or the baseline fails.

    python tests/mutants.py [--only NAME ...] [--list] [--keep]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPY_IGNORE = shutil.ignore_patterns('.venv', '.git', 'work_dirs', 'data', '__pycache__', '*.egg-info', '.pytest_cache')
TIMEOUT_S = 900  # one mutant's tests; the slowest list runs in about a minute


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


BACKBONE, BLOCK, POS_EMBED = 'lape_mm/models/backbones/lape_vit.py', 'lape_mm/models/layers/block.py', \
    'lape_mm/models/layers/pos_embed.py'
T_CONVERT = 'tests/checkpoint/test_convert.py'
T_DATASETS = 'tests/datasets/test_datasets.py'
T_ATOMIC_BACKEND = 'tests/engine/test_atomic_backend.py'
T_CPU_AMP_OPS = 'tests/engine/test_cpu_amp_ops.py'
T_LAYER_DECAY = 'tests/engine/test_layer_decay.py'
T_MESSAGE_HUB_HOOK = 'tests/engine/test_message_hub_hook.py'
T_OPTIM_WRAPPER = 'tests/engine/test_optim_wrapper.py'
T_RNG_STATE_HOOK = 'tests/engine/test_rng_state_hook.py'
T_STRICT_CHECKPOINT = 'tests/engine/test_strict_checkpoint.py'
T_SYNC_BUFFERS = 'tests/engine/test_sync_buffers.py'
T_WORK_DIR_LOCK = 'tests/engine/test_work_dir_lock.py'
T_AUTHORS = 'tests/models/test_authors_reference.py'
T_CHECKPOINT_FIT = 'tests/models/test_checkpoint_fit.py'
T_LAPE_VIT = 'tests/models/test_lape_vit.py'
T_ADAPTER = 'tests/models/test_lape_vit_adapter.py'
T_LAUNCH = 'tests/tools/test_launch.py'
T_NAVER = 'tests/models/test_rope.py::test_naver_rope_vit_loads_strictly_and_matches_timm'
T_ROPE_WINDOWS = 'tests/models/test_rope.py::test_window_attention_rotates_by_grid_position'
DATASETS, DATA_HOOK = 'lape_mm/datasets.py', 'lape_mm/engine/data_check_hook.py'

MUTANTS = [
    # ---- the backbone
    Mutant('pe before norm1', BLOCK, 'y = self.norm1(x)\n        if pe is not None:\n            y = y + pe',
           'y = self.norm1(x if pe is None else x + pe)', (f'{T_LAPE_VIT}::test_matches_reference',)),
    Mutant('pe_norm is norm1', BLOCK, 'norm = self.pe_norm\n', 'norm = self.norm1 if self.pe_norm is not None else None\n',
           (f'{T_LAPE_VIT}::test_matches_reference',)),
    Mutant("'lape' not progressive", BACKBONE, 'pe = blk.normalize_pe(pe)\n            return pe, pe',
           'return blk.normalize_pe(pe), pe', (f'{T_LAPE_VIT}::test_matches_reference',)),
    Mutant("'share' also into attention", BACKBONE, 'x = x + term  # into the residual stream\n                    term = None',
           'x = x + term', (f'{T_LAPE_VIT}::test_matches_reference',)),
    Mutant('PE dropped under bf16', BLOCK, '        if pe is not None:\n            y = y + pe',
           '        if pe is not None and y.dtype != torch.bfloat16:\n            y = y + pe',
           (f'{T_LAPE_VIT}::test_dtype_moves',)),
    Mutant('gradient guard removed', BLOCK, 'pe = torch.where(constant, pe.detach(), pe)', 'pe = pe',
           (f'{T_LAPE_VIT}::test_constant_slot_guard_keeps_every_other_gradient_exact',)),
    Mutant('gradient guard detaches every slot', BLOCK, 'pe = torch.where(constant, pe.detach(), pe)',
           'pe = pe.detach()', (f'{T_LAPE_VIT}::test_constant_slot_guard_keeps_every_other_gradient_exact',)),
    Mutant('windows padded with ones', 'lape_mm/models/layers/window.py', 'x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))',
           'x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h), value=1.)',
           (f'{T_LAPE_VIT}::test_window_attention_on_non_multiple_non_square_input',)),
    # ---- RoPE and the function-keeping start ('add_lape')
    Mutant('RoPE grid rows and columns swapped', BACKBONE, 'if window_size else hw)',
           'if window_size else (hw[1], hw[0]))', (T_NAVER,)),
    Mutant('RoPE rotates the cls token', BACKBONE, 'num_prefix_tokens=self.num_prefix_tokens if with_cls_token else 0,',
           'num_prefix_tokens=0,', (T_NAVER,)),
    Mutant('RoPE-ViT PE slot appended last', 'lape_mm/checkpoint/convert.py',
           "torch.cat([pe.new_zeros(pe.shape[0], 1, pe.shape[2]), pe], dim=1)",
           "torch.cat([pe, pe.new_zeros(pe.shape[0], 1, pe.shape[2])], dim=1)", (T_NAVER,)),
    Mutant('windows get the grid RoPE table', BACKBONE, '(window_size, window_size) if window_size else',
           'hw if window_size else', (T_ROPE_WINDOWS,)),
    Mutant('qkv-padded windows not rotated', BLOCK, 'if rope is not None:  # windows hold patch tokens only',
           'if False:', (T_ROPE_WINDOWS,)),
    Mutant("'add_lape' gates start open", BLOCK, 'LayerScale(dim, init_values=0.)', 'LayerScale(dim, init_values=1e-3)',
           (f'{T_LAPE_VIT}::test_add_lape_fresh_model_starts_as_add',)),
    Mutant("'add_lape' gate not applied", BLOCK, 'pe = self.pe_gate(pe)', 'pe = pe',
           (f'{T_LAPE_VIT}::test_add_lape_from_a_plain_vit_is_that_vit',)),
    Mutant('absent gates loaded open', 'lape_mm/models/backbones/checkpoint_fit.py',
           'state_dict[key] = torch.zeros_like(own[key])', 'state_dict[key] = torch.full_like(own[key], 1e-3)',
           (f'{T_LAPE_VIT}::test_add_lape_from_a_plain_vit_is_that_vit',)),
    # ---- PE tables and resizing
    Mutant('sincos_1d in float64 then rounded', POS_EMBED,
           'table = (torch.arange(num_positions, dtype=torch.float64)[:, None] / scales).float()\n'
           '    table[:, 0::2] = torch.sin(table[:, 0::2])\n    table[:, 1::2] = torch.cos(table[:, 1::2])\n'
           '    return table',
           'table = torch.arange(num_positions, dtype=torch.float64)[:, None] / scales\n'
           '    table[:, 0::2] = torch.sin(table[:, 0::2])\n    table[:, 1::2] = torch.cos(table[:, 1::2])\n'
           '    return table.float()', (f'{T_AUTHORS}::test_fixed_tables_are_the_authors',)),
    Mutant('sincos_2d rows and columns swapped', POS_EMBED, '_sincos_axis(grid[1], dim // 2)[cols.flatten()],\n'
           '                      _sincos_axis(grid[0], dim // 2)[rows.flatten()]',
           '_sincos_axis(grid[0], dim // 2)[rows.flatten()],\n'
           '                      _sincos_axis(grid[1], dim // 2)[cols.flatten()]',
           (f'{T_AUTHORS}::test_fixed_tables_are_the_authors',)),
    Mutant('PE resized bilinearly', POS_EMBED, "mode='bicubic', align_corners=False", "mode='bilinear', align_corners=False",
           (f'{T_LAPE_VIT}::test_resize_pos_embed_matches_timm_and_keeps_cls_slot',)),
    Mutant('PE resized with align_corners', POS_EMBED, "mode='bicubic', align_corners=False",
           "mode='bicubic', align_corners=True", (f'{T_LAPE_VIT}::test_resize_pos_embed_matches_timm_and_keeps_cls_slot',)),
    # ---- checkpoint conversion and strictness
    Mutant("mmpretrain head not carried", 'lape_mm/checkpoint/convert.py', "MMPRETRAIN_CLS_HEAD = 'head.layers.head.'",
           "MMPRETRAIN_CLS_HEAD = 'head.fc.'", (f'{T_CONVERT}::test_mmpretrain_classifier_checkpoint_matches_mmpretrain_forward',)),
    Mutant('timm drops the head', 'lape_mm/models/classifiers/timm_lape.py',
           'keep_head = bool(model.num_classes) and head is not None', 'keep_head = False and head is not None',
           (f'{T_CONVERT}::test_timm_create_model_and_pretrained_file',)),
    Mutant('saved PE grid ignored', 'lape_mm/models/backbones/checkpoint_fit.py', '    if saved_grid is not None:\n'
           '        if saved_grid[0]', '    if False:\n        if saved_grid[0]',
           (f'{T_CHECKPOINT_FIT}::test_saved_grid_from_mmengine_cfg_is_used',)),
    Mutant('loading not strict', 'lape_mm/models/backbones/checkpoint_fit.py', '    if not strict:\n', '    if True:\n',
           (f'{T_CHECKPOINT_FIT}::test_missing_backbone_tensor_is_an_error_naming_it',)),
    Mutant('ViT-Adapter layer scales swapped', 'lape_mm/checkpoint/convert.py',
           r"(r'^blocks\.(\d+)\.gamma([12])$', r'blocks.\1.ls\2.gamma'),",
           r"(r'^blocks\.(\d+)\.gamma1$', r'blocks.\1.ls2.gamma'), (r'^blocks\.(\d+)\.gamma2$', r'blocks.\1.ls1.gamma'),",
           (f'{T_ADAPTER}::test_original_detector_checkpoint_loads_through_init_cfg',)),
    Mutant('per-block PEs in string order', 'lape_mm/checkpoint/convert.py',
           r"per_block = sorted((k for k in state_dict if re.fullmatch(r'pos_embed\d+', k)), key=lambda k: int(k[9:]))",
           r"per_block = sorted(k for k in state_dict if re.fullmatch(r'pos_embed\d+', k))",
           (f'{T_CONVERT}::test_authors_per_block_pes_keep_block_order_past_ten_blocks',)),
    Mutant("DDP 'module.' prefix kept", 'lape_mm/checkpoint/convert.py',
           "STRIPPED_PREFIXES = ('module.', 'backbone.', 'encoder.')", "STRIPPED_PREFIXES = ('backbone.', 'encoder.')",
           (f'{T_CONVERT}::test_ddp_saved_checkpoint_loses_its_module_prefix',)),
    # ---- the engine
    Mutant('inputs not padded to whole patches by default', BACKBONE, 'pad_to_patch: bool = True,',
           'pad_to_patch: bool = False,', (f'{T_CONVERT}::test_mmseg_vit_checkpoint_matches_mmseg_forward',)),
    Mutant('checkpoint written in place', 'lape_mm/engine/atomic_backend.py',
           "        with atomic_write(filepath) as tmp, open(tmp, 'wb') as f:", "        with open(filepath, 'wb') as f:",
           (f'{T_ATOMIC_BACKEND}::test_checkpoints_are_written_atomically',)),
    Mutant('atomic write replaces a link', 'lape_mm/fileio.py', 'target = os.path.realpath(path)',
           'target = os.path.abspath(path)', (f'{T_ATOMIC_BACKEND}::test_atomic_writes_through_a_symbolic_link_keep_the_link',)),
    Mutant('RNG state restored without numpy', 'lape_mm/engine/rng_state_hook.py',
           "    np.random.set_state(states['numpy'])\n", '', (f'{T_RNG_STATE_HOOK}::test_rng_states_come_back_at_the_next_epoch_and_not_for_load_from',)),
    Mutant('RNG restored before the skipped batches', 'lape_mm/engine/rng_state_hook.py',
           'loop.dataloader_iterator = RestoreBeforeBatch(loop.dataloader_iterator, runner.iter, states)',
           'set_rng_states(states)', (f'{T_RNG_STATE_HOOK}::test_rng_states_come_back_just_before_the_first_batch_after_the_skipped_ones',)),
    Mutant('validation draws from the training RNG', 'lape_mm/engine/rng_state_hook.py',
           'self._training = get_rng_states()', 'self._training = None',
           (f'{T_RNG_STATE_HOOK}::test_rng_states_come_back_just_before_the_first_batch_after_the_skipped_ones',)),
    Mutant('RNG restored for load_from', 'lape_mm/engine/rng_state_hook.py', 'if states is None or runner.iter == 0:',
           'if states is None:', (f'{T_RNG_STATE_HOOK}::test_rng_states_come_back_at_the_next_epoch_and_not_for_load_from',)),
    Mutant('message hub pickles HistoryBuffer', 'lape_mm/engine/message_hub_hook.py',
           '            if isinstance(buffer, HistoryBuffer):', '            if False:',
           (f'{T_MESSAGE_HUB_HOOK}::test_mmengine_training_state_loads_weights_only',)),
    Mutant('every rank locks the work dir', 'lape_mm/engine/work_dir_lock.py',
           'if not is_main_process() or not is_training(runner):', 'if not is_training(runner):',
           (f'{T_WORK_DIR_LOCK}::test_work_dir_lock_is_held_by_rank_0_of_a_training_run_only',)),
    Mutant('stale temporaries kept', 'lape_mm/engine/work_dir_lock.py', '        os.remove(osp.join(folder, name))\n',
           '        pass\n',
           (f'{T_WORK_DIR_LOCK}::test_work_dir_lock_is_held_by_rank_0_of_a_training_run_only',)),
    Mutant('strict checks only for testing', 'lape_mm/engine/strict_checkpoint.py',
           "        source = runner._load_from or find_latest_checkpoint(runner.work_dir)\n",
           "        if is_training(runner):\n            return\n        source = runner._load_from or find_latest_checkpoint(runner.work_dir)\n",
           (f'{T_STRICT_CHECKPOINT}::test_strict_checkpoint_hook_refuses_what_does_not_fit_for_every_purpose',)),
    Mutant('buffers synced only after epochs', 'lape_mm/engine/sync_buffers.py', '        self.after_train_epoch(runner)',
           '        pass', (f'{T_SYNC_BUFFERS}::test_buffers_are_averaged_after_every_training_iteration',)),
    Mutant('mmcv ops left wrapped after the run', 'lape_mm/engine/cpu_amp_ops.py', '            setattr(module, op_name, op)\n',
           '            pass\n', (f'{T_CPU_AMP_OPS}::test_mmcv_nms_and_roi_align_run_under_cpu_bf16_during_a_run',)),
    Mutant('import patches mmengine', 'lape_mm/__init__.py', 'register_safe_globals()\n\n',
           'register_safe_globals()\nfrom .checkpoint import use_weights_only_loaders  # noqa: E402\nuse_weights_only_loaders()\n\n',
           ('tests/test_package.py::test_import_changes_no_object_of_mmengine_or_mmcv',)),
    Mutant('torch.hub cache ignored', 'lape_mm/checkpoint/download.py', 'if not osp.isfile(ours) and osp.isfile(hubs):',
           'if False:', ('tests/checkpoint/test_read.py::test_a_file_in_torch_hub_cache_is_used_without_network_and_named',)),
    Mutant('downloads of one name share a file', 'lape_mm/checkpoint/download.py',
           'return osp.join(model_dir, key, name), osp.join(model_dir, name)',
           'return osp.join(model_dir, name), osp.join(model_dir, name)',
           ('tests/checkpoint/test_read.py::test_urls_with_the_same_file_name_load_their_own_weights',)),
    Mutant('layer decay off by one layer', 'lape_mm/engine/layer_decay.py', 'decay_rate ** (num_layers + 1 - layer_id)',
           'decay_rate ** (num_layers - layer_id)', (f'{T_LAYER_DECAY}::test_layer_decay_lrs_and_no_decay_groups',)),
    Mutant('PE weight-decayed', 'lape_mm/engine/layer_decay.py',
           "NO_WEIGHT_DECAY = ('pos_embed', 'cls_token', 'rope.freqs', '*.pos_embed', '*.cls_token', '*.rope.freqs')",
           "NO_WEIGHT_DECAY = ('cls_token', 'rope.freqs', '*.cls_token', '*.rope.freqs')",
           (f'{T_LAYER_DECAY}::test_layer_decay_lrs_and_no_decay_groups',)),
    Mutant('RoPE frequencies weight-decayed', 'lape_mm/engine/layer_decay.py', "'*.cls_token', '*.rope.freqs')",
           "'*.cls_token')", (f'{T_LAYER_DECAY}::test_layer_decay_lrs_and_no_decay_groups',)),
    Mutant('bf16 optimizer never steps', 'lape_mm/engine/optim_wrapper.py',
           '        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype',
           '        self.cast_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype\n'
           '        self.step = lambda **kwargs: None',
           (f'{T_OPTIM_WRAPPER}::test_autocast_optim_wrapper_trains_in_bf16_on_cpu',)),
    Mutant('--amp is bf16 even with CUDA', 'tools/launch.py',
           "dtype = dtype or ('float16' if torch.cuda.is_available() else 'bfloat16')", "dtype = dtype or 'bfloat16'",
           (f'{T_LAUNCH}::test_amp_dtype_selects_the_optim_wrapper',)),
    Mutant('with_cp ignored', BACKBONE, 'if self.with_cp and self.training and x.requires_grad:', 'if False:',
           (f'{T_LAPE_VIT}::test_with_cp_reruns_each_block_in_backward_and_gives_same_gradients',)),
    Mutant('adapter with_cp ignored', 'lape_mm/models/layers/adapter_modules.py',
           'if self.with_cp and self.training and torch.is_grad_enabled():', 'if False:',
           (f'{T_ADAPTER}::test_with_cp_reruns_blocks_and_adapters_in_backward_and_gives_same_gradients',)),
    # ---- the tools
    Mutant('tools/test.py ignores its CHECKPOINT', 'tools/test.py', '    cfg.load_from = args.checkpoint\n',
           "    cfg.setdefault('load_from', args.checkpoint)\n",
           ('tests/tools/test_segmentation.py::test_tools_test_evaluates_its_checkpoint_argument_strictly',)),
    Mutant('predictions written into the dataset', 'tools/outputs.py',
           'if resolved == folder.resolve() or folder.resolve() in resolved.parents:', 'if resolved == folder:',
           ('tests/tools/test_outputs.py::test_tools_test_refuses_to_write_predictions_into_its_dataset',)),
    Mutant('outputs written over inputs', 'tools/outputs.py',
           "if path is not None and '://' not in str(path) and _same_file(out, Path(path)):", 'if False:',
           ('tests/tools/test_outputs.py::test_export_onnx_refuses_to_write_over_its_checkpoint',
            'tests/tools/test_outputs.py::test_convert_checkpoint_refuses_its_source_and_a_folder')),
    Mutant('tiny makers empty the whole folder', 'tools/tiny_data/folder.py',
           'for path in (out / name for name in OWN_ENTRIES[kind]):', 'for path in out.iterdir():',
           ('tests/tools/test_outputs.py::test_tiny_makers_replace_only_their_own_files',)),
    Mutant('get_flops ignores --shape', 'tools/get_flops.py', 'hw = tuple(args.shape * 2)[:2]', 'hw = (512, 512)',
           ('tests/tools/test_analysis.py::test_get_flops_tool',)),
    Mutant('logged losses skip NaN', 'tests/conftest.py', r"re.findall(r' loss: (\S+)', output)",
           r"re.findall(r' loss: ([\d.]+)', output)",
           ('tests/tools/test_detection.py::test_logged_losses_read_nan_and_inf',)),
    # ---- the data checks
    Mutant('label maps checked only in the sample', DATASETS, "    check_files(maps, 'label map')\n", '',
           (f'{T_DATASETS}::test_files_outside_the_decoded_sample_are_checked',)),
    Mutant('images checked only in the sample', DATASETS, '    check_files(paths)\n', '',
           (f'{T_DATASETS}::test_files_outside_the_decoded_sample_are_checked',)),
    Mutant('missing COCO images not counted', DATASETS,
           'if missing := [path for path in images if not os.path.isfile(path)]:', 'if missing := []:',
           (f'{T_DATASETS}::test_files_outside_the_decoded_sample_are_checked',)),
    Mutant('negative COCO box passes', DATASETS, 'if w < 0 or h < 0:', 'if False:',
           (f'{T_DATASETS}::test_inconsistent_coco_annotations_are_refused',)),
    Mutant("dataset's reduce_zero_label ignored", DATASETS, 'reduce_zero = dataset.reduce_zero_label',
           'reduce_zero = False', (f'{T_DATASETS}::test_ade20k_labels_0_to_150_pass_with_the_dataset_class_default',)),
    Mutant('class count not compared with the model', DATASETS,
           'if num_classes and (classes := _classes(leaf)) and len(classes) != num_classes:', 'if False:',
           (f'{T_DATASETS}::test_class_folders_beyond_the_model_head_are_refused',)),
    Mutant('class folder names taken for the classes', DATASETS,
           "    return dataset.metainfo.get('thing_classes') or dataset.metainfo.get('classes')",
           "    return getattr(dataset, 'folder_to_idx', None) or dataset.metainfo.get('classes')",
           (f'{T_DATASETS}::test_class_folders_for_training_and_a_list_file_for_validation_pass',)),
    Mutant('mmdet roi_head classes not read', DATA_HOOK, "getattr(getattr(model, 'roi_head', None), 'bbox_head', None)",
           'None', (f'{T_DATASETS}::test_the_class_count_is_read_from_the_model_head',)),
    Mutant('val class folders not compared with train', DATA_HOOK,
           "            check_same_classes(datasets['train'], datasets['val'])", '            pass',
           (f'{T_DATASETS}::test_the_hook_refuses_a_validation_set_missing_a_class_folder',)),
    Mutant('test set not checked', DATA_HOOK, "for name in ('train', 'val', 'test')", "for name in ('train', 'val')",
           (f'{T_DATASETS}::test_the_hook_checks_the_test_data_before_loading_the_checkpoint',)),
    Mutant('every rank reads the files', DATA_HOOK, 'if is_main_process():', 'if True:',
           (f'{T_DATASETS}::test_only_rank_0_reads_the_files_and_every_rank_raises',)),
    Mutant("rank 0's outcome not broadcast", DATA_HOOK, '        broadcast_object_list(message)\n', '',
           (f'{T_DATASETS}::test_only_rank_0_reads_the_files_and_every_rank_raises',)),
    # ---- the inferencers
    Mutant('inferencer loads any checkpoint', 'lape_mm/apis.py',
           "        check_checkpoint_fits(model, checkpoint, self.weights_path, 'infer')\n", '',
           ('tests/tools/test_detection.py::test_det_inferencer_refuses_checkpoint_that_does_not_fit',
            'tests/tools/test_segmentation.py::test_inference_refuses_checkpoint_that_does_not_fit')),
    Mutant('seg inferencer ignores the checkpoint', 'lape_mm/apis.py',
           '        super()._load_weights_to_model(model, checkpoint, cfg)', '        pass',
           ('tests/tools/test_segmentation.py::test_infer_tool_segments_as_the_model_does',)),
    # ---- the adapter
    Mutant('injector without gamma', 'lape_mm/models/layers/adapter_modules.py', 'self.gamma * ', '',
           (f'{T_ADAPTER}::test_matches_reference',)),
    Mutant('extra extractors always on', 'lape_mm/models/backbones/lape_vit_adapter.py',
           'extra_extractor=use_extra_extractor and i ==', 'extra_extractor=i ==',
           (f'{T_ADAPTER}::test_non_default_options_match_reference',)),
    Mutant('ViT features always added', 'lape_mm/models/backbones/lape_vit_adapter.py', 'if self.add_vit_feature:',
           'if True:', (f'{T_ADAPTER}::test_non_default_options_match_reference',)),
    Mutant("'unshare' shares block 0's PE", BACKBONE, "return pe[i:i + 1], pe", "return pe[:1], pe",
           (f'{T_ADAPTER}::test_other_joins_and_pe_types_match_reference',)),
    Mutant('deformable offsets scaled by (h, w)', 'lape_mm/models/layers/ms_deform_attn.py',
           'offsets / spatial_shapes.flip(-1)[:, None, :]', 'offsets / spatial_shapes[:, None, :]',
           (f'{T_ADAPTER}::test_deformable_attention_matches_reference',)),
    # ---- the docs
    Mutant('docs name a config that does not exist', 'docs/distributed.md',
           '`mask_rcnn_lape_vit_adapter_t_fpn_{1x,3x}_coco`, `mask_rcnn_lape_vit_adapter_s_fpn_3x_coco`',
           '`mask_rcnn_lape_vit_adapter_{t,s}_fpn_{1x,3x}_coco`',
           ('tests/test_docs.py::test_documented_configs_exist',)),
    Mutant('a figure without its commit', 'docs/distributed.md', '(counted, not measured, at 68bae08; ', '(',
           ('tests/test_docs.py::test_measured_figures_name_their_commit',)),
    # ---- the studies
    Mutant('deep study ignores its cache', 'tools/study/deep.py',
           'todo = [job for job in jobs(self.config) if not self.is_cached(job)]', 'todo = jobs(self.config)',
           ('tests/tools/test_pretrain.py::test_deep_study_quick_writes_every_part_and_resumes',)),
    Mutant('deep study keeps stale results', 'tools/study/deep.py',
           "return json.loads(path.read_text()).get('inputs') == job_inputs(job, self.config)", 'return True',
           ('tests/tools/test_pretrain.py::test_deep_study_quick_writes_every_part_and_resumes',)),
]


def run_tests(repo: Path, tests: tuple[str, ...]) -> tuple[int, str, float]:
    """``pytest -x`` on ``tests`` in ``repo`` (its own lape_mm first on the path): exit code, output, seconds."""
    env = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('OMP_NUM_THREADS', '1'), 'PYTHONPATH': str(repo)}
    cmd = [sys.executable, '-m', 'pytest', '-x', '-q', '-m', 'not slow', '-p', 'no:cacheprovider', *tests]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        return -1, f'timed out after {TIMEOUT_S} s\n{err.stdout or ""}', time.monotonic() - start
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - start


def check_copy_imports_itself(repo: Path) -> None:
    """The copy's tests must import the copy's lape_mm, not the one installed in .venv."""
    out = subprocess.run([sys.executable, '-c', 'import lape_mm; print(lape_mm.__file__)'], cwd=repo, timeout=300,
                         env={**os.environ, 'PYTHONPATH': str(repo)}, capture_output=True, text=True)
    if not out.stdout.strip().startswith(str(repo)):
        sys.exit(f'mutants: the scratch copy imports lape_mm from {out.stdout.strip() or out.stderr[-500:]}, '
                 f'not from {repo}: run with the project .venv (make test-mutants)')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--only', nargs='+', metavar='NAME', help='run only the mutants with these names')
    parser.add_argument('--list', action='store_true', help='list the mutants and their tests, run nothing')
    parser.add_argument('--keep', action='store_true', help='keep the scratch copy (its path is printed)')
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.only and (unknown := set(args.only) - {m.name for m in mutants}):
        parser.error(f'no mutant named {sorted(unknown)}; see --list')
    if args.list:
        for m in mutants:
            print(f'{m.name}: {m.file} -> {", ".join(m.tests)}')
        return 0
    for m in mutants:
        if (count := (ROOT / m.file).read_text().count(m.old)) != 1:
            sys.exit(f'mutants: {m.name!r}: its text occurs {count} times in {m.file} (once expected): '
                     f'update the entry in tests/mutants.py to the current source')

    scratch = Path(tempfile.mkdtemp(prefix='lape_mm_mutants_'))
    repo = scratch / 'repo'
    try:
        shutil.copytree(ROOT, repo, ignore=COPY_IGNORE)
        check_copy_imports_itself(repo)
        all_tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
        print(f'baseline: {len(all_tests)} test functions on the unmutated copy ...', flush=True)
        code, output, seconds = run_tests(repo, all_tests)
        if code != 0:
            print(output[-6000:])
            print(f'mutants: the baseline fails (exit {code}) before any mutation; fix the suite first')
            return 1
        print(f'baseline passed in {seconds:.0f} s', flush=True)
        rows = []
        for m in mutants:
            path = repo / m.file
            source = path.read_text()
            path.write_text(source.replace(m.old, m.new))
            try:
                code, output, seconds = run_tests(repo, m.tests)
            finally:
                path.write_text(source)
            verdict = 'killed' if code in (1, 2) else 'SURVIVED' if code == 0 else f'ERROR (exit {code})'
            if verdict != 'killed':
                print(output[-3000:])
            failed = next((line.split(' - ')[0].split('::')[-1] for line in output.splitlines()
                           if line.startswith(('FAILED', 'ERROR'))), '')
            rows.append((m.name, m.file.split('/')[-1], verdict, failed, f'{seconds:.0f} s'))
            print(f'{m.name}: {verdict} {failed}', flush=True)
        widths = [max(len(str(r[i])) for r in rows + [HEADER]) for i in range(len(HEADER))]
        print()
        for row in [HEADER, tuple('-' * w for w in widths), *rows]:
            print('| ' + ' | '.join(str(c).ljust(w) for c, w in zip(row, widths)) + ' |')
        survivors = [r[0] for r in rows if r[2] != 'killed']
        print(f'\n{len(rows) - len(survivors)} of {len(rows)} mutants killed'
              + (f'; not killed: {", ".join(survivors)}' if survivors else ''))
        return 1 if survivors else 0
    finally:
        if args.keep:
            print(f'scratch copy kept in {repo}')
        else:
            shutil.rmtree(scratch, ignore_errors=True)


HEADER = ('mutant', 'file', 'result', 'first failing test', 'time')

if __name__ == '__main__':
    sys.exit(main())
