"""Evaluate a checkpoint on a config's test set: same CLI as mmseg's and mmdet's tools/test.py."""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))

import lape_mm  # noqa: E402,F401  (registers LaPE models, safe checkpoint globals)
from tools.launch import (add_runner_args, build_runner, check_all_files, configure_test_outputs,  # noqa: E402
                          dump_det_results, is_missing_local_file, load_config, parse_runner_args)
from tools.cli import run_main  # noqa: E402
from tools.outputs import claim_prediction_folder, dataset_folders, refuse_overwriting_inputs  # noqa: E402


def check_out(cfg, out: str, inputs: dict[str, str]) -> None:
    """``--out`` before the run: mmdet's .pkl must not be a file it reads, mmseg's folder is claimed for
    this tool's PNGs (:func:`claim_prediction_folder`)."""
    if cfg.get('default_scope') == 'mmdet':
        refuse_overwriting_inputs('--out', out, inputs)
    else:
        claim_prediction_folder(out, dataset_folders(cfg))


def main() -> None:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file (.pth or .safetensors), file:// or http(s):// URL')
    parser.add_argument('--out', help='mmseg: folder for predicted label PNGs (a new or empty one, or one an earlier '
                                      '--out wrote; never in a dataset folder); mmdet: .pkl of raw results')
    parser.add_argument('--show-dir', help='folder for images with predictions drawn on them')
    add_runner_args(parser)
    args = parse_runner_args(parser)
    if is_missing_local_file(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
    cfg = load_config(args.config, args.cfg_options, args.launcher, args.work_dir)
    cfg.load_from = args.checkpoint
    if args.out and cfg.get('default_scope') == 'mmdet' and not args.out.endswith(('.pkl', '.pickle')):
        parser.error(f'--out for a detection config is a .pkl file of raw results, got {args.out}; e.g. '
                     f'--out results.pkl')
    if args.out:
        check_out(cfg, args.out, {'checkpoint': args.checkpoint, 'config': args.config})
    configure_test_outputs(cfg, args.show_dir, args.out)
    if args.check_all_files:
        check_all_files(cfg)
    runner = build_runner(cfg)
    if args.out and cfg.get('default_scope') == 'mmdet':
        dump_det_results(runner, args.out)
    runner.test()


if __name__ == '__main__':
    run_main(main)
