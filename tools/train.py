"""Train a detector, segmentor or classifier from an OpenMMLab config.

Mirrors mmdet's tools/train.py; the config's ``default_scope`` (mmdet, mmseg
or mmpretrain) says which library's registries are used. Importing dit_mm
registers its modules and makes checkpoint loading work on torch >= 2.6.
"""
import argparse

import dit_mm  # noqa: F401  (registers modules, safe checkpoint loading)
from dit_mm.engine.cli import (add_common_args, apply_train_args,
                               build_runner, load_config, parse_tool_args)
from dit_mm.engine.run_guards import check_train_run


def parse_args():
    parser = argparse.ArgumentParser(
        description='Train a detector, segmentor or classifier')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true', help='enable automatic mixed precision')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate by the actual batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or from the latest one in the '
        'work dir when no path is given')
    add_common_args(parser)
    return parse_tool_args(parser)


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.launcher)
    apply_train_args(cfg, args)
    check_train_run(cfg)  # work dir and checkpoint, before anything is written
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
