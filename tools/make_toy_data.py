"""Generate the toy data sets (COCO, ADE20K, Cityscapes, ImageNet layouts).

    python tools/make_toy_data.py [--out data/toy] [--sets coco ade20k ...]
                                  [--seed 0] [--overwrite]

Deterministic by seed. A set already generated with the same settings is left
as it is; a folder holding anything else is refused (see dit_mm.toydata.output).
"""
import argparse
import time
from pathlib import Path

from dit_mm.toydata import TOY_SETS, ToyDataExistsError


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='data/toy',
                        help='root folder of the toy sets (default data/toy)')
    parser.add_argument('--sets', nargs='+', choices=sorted(TOY_SETS),
                        default=sorted(TOY_SETS), help='which sets to make')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--overwrite', action='store_true',
                        help='replace toy sets made with other settings')
    return parser.parse_args()


def main():
    args = parse_args()
    for name in args.sets:
        writer, folder = TOY_SETS[name]
        root = Path(args.out) / folder
        start = time.time()
        try:
            made = writer(root, seed=args.seed, overwrite=args.overwrite)
        except ToyDataExistsError as err:
            raise SystemExit(f'error: {err}')
        state = (f'made in {time.time() - start:.1f}s' if made else
                 'already there')
        print(f'{name:<11} {root}  ({state})')


if __name__ == '__main__':
    main()
