"""PVTv2's variants (b0-b5), the routing space DiT is built on."""
from typing import Dict, List, Union

from ..common.checks import stock_check

ARCH_KEYS = ('embed_dims', 'depths', 'num_heads', 'sr_ratios', 'mlp_ratios',
             'patch_sizes', 'strides')

_COMMON = dict(
    num_heads=[1, 2, 5, 8],
    sr_ratios=[8, 4, 2, 1],
    patch_sizes=[7, 3, 3, 3],
    strides=[4, 2, 2, 2])


def _arch(width: int, depths: List[int], mlp_ratios=(8, 8, 4, 4)) -> dict:
    return dict(
        _COMMON,
        embed_dims=[width * h for h in _COMMON['num_heads']],
        depths=list(depths),
        mlp_ratios=list(mlp_ratios))


# PVTv2 paper, Table 1 (the widths are 64 * heads except b0's 32 * heads).
ARCHS: Dict[str, dict] = {
    'b0': _arch(32, [2, 2, 2, 2]),
    'b1': _arch(64, [2, 2, 2, 2]),
    'b2': _arch(64, [3, 4, 6, 3]),
    'b3': _arch(64, [3, 4, 18, 3]),
    'b4': _arch(64, [3, 8, 27, 3]),
    'b5': _arch(64, [3, 6, 40, 3], mlp_ratios=(4, 4, 4, 4)),
}


def resolve_arch(arch: Union[str, dict]) -> dict:
    """The full setting of ``arch``: a name of :data:`ARCHS` or a dict.

    A dict needs ``embed_dims``, ``depths``, ``num_heads``, ``sr_ratios`` and
    ``mlp_ratios`` (four stages each); ``patch_sizes`` and ``strides`` default to
    PVTv2's.
    """
    if isinstance(arch, str):
        if arch.lower() not in ARCHS:
            raise KeyError(f'Unknown DiT arch {arch!r}; choose one of '
                           f'{sorted(ARCHS)} or pass a dict with '
                           f'{list(ARCH_KEYS)}')
        return {k: list(v) for k, v in ARCHS[arch.lower()].items()}
    if not isinstance(arch, dict):
        raise TypeError(f'arch must be a name or a dict, got {type(arch)}')
    unknown = set(arch) - set(ARCH_KEYS)
    if unknown:
        raise KeyError(f'Unknown DiT arch keys {sorted(unknown)}; '
                       f'allowed: {list(ARCH_KEYS)}')
    missing = [k for k in ARCH_KEYS[:5] if k not in arch]
    if missing:
        raise KeyError(f'DiT arch dict lacks {missing}')
    setting = {k: list(arch.get(k, _COMMON.get(k))) for k in ARCH_KEYS}
    lengths = {k: len(v) for k, v in setting.items()}
    if set(lengths.values()) != {4}:
        raise ValueError(f'DiT arch needs 4 stages in every entry, got '
                         f'{lengths}')
    return setting


# mmdet's PyramidVisionTransformerV2 defaults: its network is PVTv2-b2
PVTV2_DEFAULTS = dict(embed_dims=64, num_layers=[3, 4, 6, 3],
                      num_heads=[1, 2, 5, 8], patch_sizes=[7, 3, 3, 3],
                      strides=[4, 2, 2, 2], paddings=[3, 1, 1, 1],
                      sr_ratios=[8, 4, 2, 1], mlp_ratios=[8, 8, 4, 4])


def arch_of_pvtv2_args(arch: Union[str, dict, None], **args) -> dict:
    """DiT's arch from ``arch`` or from mmdet ``PyramidVisionTransformerV2``'s
    network arguments (``embed_dims``: the first stage's width, the others
    ``embed_dims * num_heads[i]``), not both. Raises the ``AssertionError``
    kind mmdet raises (:class:`StockArgumentError`)."""
    changed = sorted(k for k, v in args.items()
                     if _listed(v) != _listed(PVTV2_DEFAULTS[k]))
    if arch is not None:
        stock_check(not changed, f'give DiT an arch ({arch!r}) or mmdet '
                    f"PVTv2's network arguments ({changed}), not both")
        return resolve_arch(arch)
    lengths = {k: len(v) for k, v in args.items() if k != 'embed_dims'}
    stock_check(set(lengths.values()) == {4}, 'DiT builds 4 stages: '
                f'every per-stage argument needs 4 entries, got {lengths}')
    stock_check(_listed(args['paddings']) ==
                [p // 2 for p in args['patch_sizes']],
                'DiT pads each patch embedding by half its patch size '
                f"(PVTv2's), got paddings {args['paddings']} for patch sizes "
                f"{args['patch_sizes']}")
    heads = _listed(args['num_heads'])
    return resolve_arch(dict(
        embed_dims=[args['embed_dims'] * h for h in heads],
        depths=_listed(args['num_layers']), num_heads=heads,
        sr_ratios=_listed(args['sr_ratios']),
        mlp_ratios=_listed(args['mlp_ratios']),
        patch_sizes=_listed(args['patch_sizes']),
        strides=_listed(args['strides'])))


def _listed(value):
    return list(value) if isinstance(value, (list, tuple)) else value
