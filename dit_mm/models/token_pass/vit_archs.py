"""Plain ViT variants (patch 16) the token-pass and mixed-scale backbones use."""
from typing import Dict, Union

from ..common.checks import stock_check

VIT_ARCH_KEYS = ('embed_dims', 'num_layers', 'num_heads', 'mlp_ratio')

# timm / DeiT widths, depths and heads.
VIT_ARCHS: Dict[str, dict] = {
    't': dict(embed_dims=192, num_layers=12, num_heads=3, mlp_ratio=4),
    's': dict(embed_dims=384, num_layers=12, num_heads=6, mlp_ratio=4),
    'b': dict(embed_dims=768, num_layers=12, num_heads=12, mlp_ratio=4),
    'l': dict(embed_dims=1024, num_layers=24, num_heads=16, mlp_ratio=4),
}
_ALIASES = {'tiny': 't', 'small': 's', 'base': 'b', 'large': 'l'}


def resolve_vit_arch(arch: Union[str, dict]) -> dict:
    """The setting of ``arch``: ``'s'``, ``'vit-b'``, ``'large'``... or a dict
    with ``embed_dims``, ``num_layers``, ``num_heads`` (``mlp_ratio`` 4)."""
    if isinstance(arch, str):
        name = arch.lower()
        name = name[4:] if name.startswith('vit-') else name
        name = _ALIASES.get(name, name)
        if name not in VIT_ARCHS:
            raise KeyError(f'Unknown ViT arch {arch!r}; choose one of '
                           f'{sorted(VIT_ARCHS)} (or vit-s, small, ...) or '
                           f'pass a dict with {list(VIT_ARCH_KEYS)}')
        return dict(VIT_ARCHS[name])
    if not isinstance(arch, dict):
        raise TypeError(f'arch must be a name or a dict, got {type(arch)}')
    unknown = set(arch) - set(VIT_ARCH_KEYS)
    missing = [k for k in VIT_ARCH_KEYS[:3] if k not in arch]
    if unknown or missing:
        raise KeyError(f'ViT arch dict: unknown keys {sorted(unknown)}, '
                       f'missing keys {missing}; allowed: {list(VIT_ARCH_KEYS)}')
    setting = {'mlp_ratio': 4, **arch}
    # an AssertionError, as torch's attention raises it in mmseg's ViT
    stock_check(setting['embed_dims'] % setting['num_heads'] == 0,
                f'ViT arch: embed_dims {setting["embed_dims"]} is not a '
                f'multiple of num_heads {setting["num_heads"]}')
    return setting
