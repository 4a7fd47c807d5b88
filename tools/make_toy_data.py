"""Generate the toy data sets (COCO, ADE20K, Cityscapes, ImageNet layouts).

    python tools/make_toy_data.py [--out data/toy] [--sets coco ade20k ...]
                                  [--seed 0] [--num-val N] [--overwrite]

Deterministic by seed. ``--num-val`` sets the number of val images of each
set (per class for ImageNet). A set's first val images do not depend on it,
so a larger val set (in another ``--out``) extends the default one: less
evaluation noise for measured trade-offs than the small default sets give.
A set already generated with the same settings is left as it is; a folder
holding anything else is refused (see dit_mm.toydata.output).
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
    parser.add_argument('--num-val', type=int, default=None,
                        help='val images per set (per class for imagenet; '
                        "default: each set's own, 32 coco, 16 ade20k, 8 "
                        'cityscapes, 8 per class imagenet)')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace toy sets made with other settings')
    args = parser.parse_args()
    if args.num_val is not None and args.num_val < 1:
        parser.error(f'--num-val must be at least 1, got {args.num_val}')
    return args


def main():
    args = parse_args()
    for name in args.sets:
        writer, folder = TOY_SETS[name]
        root = Path(args.out) / folder
        sizes = {} if args.num_val is None else {
            'num_val_per_class' if name == 'imagenet' else 'num_val':
            args.num_val}
        start = time.time()
        try:
            made = writer(root, seed=args.seed, overwrite=args.overwrite,
                          **sizes)
        except ToyDataExistsError as err:
            raise SystemExit(f'error: {err}')
        state = (f'made in {time.time() - start:.1f}s' if made else
                 'already there')
        print(f'{name:<11} {root}  ({state})')


if __name__ == '__main__':
    main()
