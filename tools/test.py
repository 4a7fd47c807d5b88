"""Evaluate a checkpoint on a config's test set (detection, segmentation or
classification), mirroring mmdet's tools/test.py."""
import dit_mm  # noqa: F401  (registers modules, safe checkpoint loading)
from dit_mm.engine.cli import (add_result_dump, apply_test_args,
                               build_runner, parse_tool_args, tool_config,
                               tool_parser)
from dit_mm.engine.run_guards import check_test_checkpoint


def parse_args():
    parser = tool_parser('Test (and evaluate) a model checkpoint',
                         'test config file path',
                         'the dir to save the evaluation metrics')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out', help='dump every prediction to this pickle file')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir', help='draw the predictions into this directory '
        '(relative to the run\'s folder in the work dir)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--interval', type=int, default=1,
        help='draw every INTERVAL-th test batch (with --show/--show-dir)')
    return parse_tool_args(parser)


def main():
    args = parse_args()
    cfg = tool_config(args, apply_test_args)
    check_test_checkpoint(cfg)  # every key with its shape, before loading
    runner = build_runner(cfg, evaluation=True)
    if args.out:
        add_result_dump(runner, args.out)
    runner.test()


if __name__ == '__main__':
    main()
