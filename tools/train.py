"""Train a detector, segmentor or classifier from an OpenMMLab config.

Mirrors mmdet's tools/train.py; the config's ``default_scope`` (mmdet, mmseg
or mmpretrain) says which library's registries are used. Importing dit_mm
registers its modules and makes checkpoint loading work on torch >= 2.6.
"""
import dit_mm  # noqa: F401  (registers modules, safe checkpoint loading)
from dit_mm.engine.cli import (apply_train_args, build_runner,
                               parse_tool_args, tool_config, tool_parser)
from dit_mm.engine.run_guards import check_train_run


def parse_args():
    parser = tool_parser('Train a detector, segmentor or classifier',
                         'train config file path',
                         'the dir to save logs and models')
    parser.add_argument(
        '--amp', action='store_true', help='enable automatic mixed precision')
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale the learning rate by the actual batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or from the latest one in the '
        'work dir when no path is given')
    return parse_tool_args(parser)


def main():
    cfg = tool_config(parse_args(), apply_train_args)
    check_train_run(cfg)  # work dir and checkpoint, before anything is written
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
