"""The static peer of the token-pass and mixed-scale ViTs: mmseg's
``VisionTransformer``, rebuilt from the backbone's modules (the
constructor's arguments are not kept), with the same key names."""
from typing import Tuple

from torch import Tensor, nn

from ..common.static_peer import PeerBuild, with_same_names


def _vit_class():
    from mmseg.models.backbones import VisionTransformer

    class ViTPeer(VisionTransformer):
        """mmseg's ViT; with ``output_cls_token`` only the class tokens."""

        def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
            outs = super().forward(inputs)
            if self.output_cls_token:
                return tuple(out[1] for out in outs)
            return outs

    return ViTPeer


def vit_settings(backbone: nn.Module) -> dict:
    """mmseg ``VisionTransformer`` arguments that rebuild ``backbone``'s ViT
    (read from its modules: the constructor's arguments are not kept)."""
    layer = backbone.layers[0]
    mha = layer.attn.attn
    norm = layer.ln1
    if not isinstance(norm, nn.LayerNorm):
        raise TypeError(f'the peer ViT is built with LayerNorm; '
                        f'{type(backbone).__name__} uses {type(norm).__name__}')
    ffn_parts = list(layer.ffn.layers.modules())
    linears = [m for m in ffn_parts if isinstance(m, nn.Linear)]
    embed = backbone.patch_embed
    dims = backbone.pos_embed.shape[-1]
    mlp_ratio = linears[0].out_features / dims
    adaptive = embed.adap_padding
    return dict(
        img_size=tuple(backbone.img_size),
        patch_size=backbone.patch_size,
        patch_pad=(adaptive.padding if adaptive is not None else
                   embed.projection.padding[0]),
        in_channels=embed.projection.in_channels,
        embed_dims=dims,
        num_layers=len(backbone.layers),
        num_heads=mha.num_heads,
        mlp_ratio=int(mlp_ratio) if mlp_ratio.is_integer() else mlp_ratio,
        out_indices=list(backbone.out_indices),
        qkv_bias=mha.in_proj_bias is not None,
        with_cls_token=backbone.with_cls_token,
        output_cls_token=backbone.out_type == 'cls_token',
        norm_cfg=dict(type='LN', eps=norm.eps),
        act_cfg=dict(type=type(layer.ffn.layers[0][1]).__name__),
        patch_norm=embed.norm is not None,
        patch_bias=embed.projection.bias is not None,
        pre_norm=backbone.pre_norm,
        final_norm=backbone.final_norm,
        interpolate_mode=backbone.interpolate_mode,
        num_fcs=len(linears),
        with_cp=backbone.with_cp)


def vit_peer(backbone: nn.Module) -> PeerBuild:
    """mmseg's ViT built with the settings of the token-pass (or
    mixed-scale) ``backbone``."""
    return with_same_names(backbone, _vit_class()(**vit_settings(backbone)),
                           "mmseg's VisionTransformer")
