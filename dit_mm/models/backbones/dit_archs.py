"""PVTv2's variants (b0-b5), the routing space DiT is built on."""
from typing import Dict, List, Union

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
