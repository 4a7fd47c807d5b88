"""TokenPassViT: equality with mmseg's VisionTransformer on the full route,
weight loading (mmseg, timm / DeiT), token pass by threshold and by budget,
batch independence, the stop heads' losses and the threshold schedule, the
reconstruction module, distillation, and clear errors."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope
from mmseg.models.backbones import VisionTransformer
from mmseg.registry import MODELS as MMSEG_MODELS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

from dit_mm.core import ViTCost, budget_keep_counts
from dit_mm.models.backbones import TokenPassViT
from dit_mm.models.token_pass.vit import default_head_layers
from dit_mm.models.token_pass.vit_blocks import packed_attention
from dit_mm.core.tokens import select_tokens
from test_stock_peers import perturb

SMALL = dict(embed_dims=48, num_layers=6, num_heads=3)


# the timm / DeiT choices our configs set (mmseg's defaults differ)
DEIT = dict(patch_bias=True, norm_cfg=dict(type='LN', eps=1e-6))


def mmseg_vit(dims, heads, layers=12, img_size=224, out=(2, 5, 8, 11),
              **kwargs):
    """mmseg's VisionTransformer (its defaults unless ``kwargs`` say
    otherwise), every weight moved off its initial value."""
    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=img_size, embed_dims=dims, num_layers=layers,
        num_heads=heads, out_indices=out, final_norm=True, **kwargs)
    vit.init_weights()
    perturb(vit).eval()  # mmseg's train() returns None: no chaining
    return vit


def small_model(**kwargs):
    torch.manual_seed(0)
    args = dict(arch=SMALL, img_size=64, out_indices=(1, 3, 5),
                head_layers=[1, 3], num_classes=5)
    args.update(kwargs)
    model = TokenPassViT(**args)
    model.init_weights()
    spread_heads(model)
    return model.eval()


def spread_heads(backbone):
    """Stop heads whose confidences spread over about 0.4 ... 0.85 (freshly
    initialised ones are all unsure), so thresholds there stop some tokens."""
    torch.manual_seed(0)
    for head in backbone.stop_heads:
        torch.nn.init.normal_(head.fc.weight, std=0.2)


@pytest.mark.parametrize('arch,dims,heads', [('s', 384, 6), ('b', 768, 12)])
def test_full_route_equals_mmseg_vit(arch, dims, heads):
    vit = mmseg_vit(dims, heads)
    ours = TokenPassViT(arch, img_size=224, out_indices=(2, 5, 8, 11),
                        final_norm=True)
    ours.init_weights()
    ours.load_weights(vit.state_dict(), 'mmseg')
    ours.eval().set_budget(1.0)
    x = torch.randn(2, 3, 100, 132)  # not the training size: pos resize
    with torch.no_grad():
        expected, got = vit(x), ours(x)
    assert len(got) == 4
    for a, b in zip(expected, got):
        assert b.shape == a.shape == (2, dims, 7, 9)
        assert b.is_contiguous()
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    info = got.stats
    assert info.flops_fraction.tolist() == [1.0, 1.0]
    assert (info.stop_layer == 11).all()


def _timm_state(vit):
    """mmseg ViT weights renamed as timm's vision_transformer keys."""
    state = {}
    for key, value in vit.state_dict().items():
        key = (key.replace('patch_embed.projection', 'patch_embed.proj')
               .replace('attn.attn.in_proj_', 'attn.qkv.')
               .replace('attn.attn.out_proj', 'attn.proj')
               .replace('ffn.layers.0.0', 'mlp.fc1')
               .replace('ffn.layers.1', 'mlp.fc2').replace('layers.', 'blocks.')
               .replace('ln1', 'norm1').replace('ln2', 'norm2'))
        if key.startswith('norm1.'):
            key = 'norm.' + key[len('norm1.'):]
        state[key] = value
    return state


def test_loads_timm_and_deit_layouts_with_a_resized_position_embedding(
        tmp_path):
    vit = mmseg_vit(384, 6, img_size=224, **DEIT)  # timm has a patch bias
    timm = _timm_state(vit)
    timm['head.weight'] = torch.zeros(1000, 384)
    # DeiT-distilled: a distillation token and its position entry
    deit = dict(timm, dist_token=torch.zeros(1, 1, 384))
    pos = timm['pos_embed']
    deit['pos_embed'] = torch.cat([pos[:, :1], torch.zeros(1, 1, 384),
                                   pos[:, 1:]], dim=1)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = vit(x)
    for name, state in (('timm', timm), ('deit', deit)):
        path = tmp_path / f'{name}.pth'
        torch.save(dict(model=state), path)
        ours = TokenPassViT('s', img_size=224, out_indices=(2, 5, 8, 11),
                            final_norm=True, **DEIT, init_cfg=dict(
                                type='Pretrained', checkpoint=str(path)))
        ours.init_weights()
        ours.eval().set_budget(1.0)
        with torch.no_grad():
            got = ours(x)
        for a, b in zip(expected, got):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    # 224-pretrained weights into a 512 model: the 14x14 grid is resized
    big = TokenPassViT('s', img_size=512, **DEIT)
    report = big.load_weights(timm, 'timm')
    assert 'timm layout' in report
    assert big.pos_embed.shape == (1, 1 + 32 * 32, 384)


def test_a_checkpoint_of_another_arch_is_refused_and_nothing_changes():
    ours = TokenPassViT('s', img_size=224)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    with pytest.raises(ValueError, match='shape mismatches.*another arch'):
        ours.load_weights(mmseg_vit(768, 12).state_dict(), 'vit-b.pth')
    with pytest.raises(KeyError, match='not a ViT state dict'):
        ours.load_weights({'conv1.weight': torch.zeros(1)}, 'resnet.pth')
    for key, value in ours.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_threshold_stops_confident_tokens_cumulatively():
    model = small_model(stop_threshold=0.7)
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        outs = model(x)
    assert [o.shape for o in outs] == [(2, 48, 4, 5)] * 3
    info = outs.stats
    assert info.stop_layer.shape == (2, 4, 5)
    assert set(info.stop_layer.unique().tolist()) <= {1, 3, 5}
    assert (info.stop_layer < 5).any()  # some tokens stopped
    kept = info.kept
    assert kept.shape == (2, 2) and (kept[:, 1] <= kept[:, 0]).all()
    # the stop map and the keep counts say the same
    assert torch.equal((info.stop_layer > 1).flatten(1).sum(1), kept[:, 0])
    assert (info.flops_fraction < 1).all()
    # a token stopped after layer 1 keeps its layer-1 value to the end
    stopped = info.stop_layer == 1
    assert torch.equal(outs[2].permute(0, 2, 3, 1)[stopped],
                       outs[0].permute(0, 2, 3, 1)[stopped])
    assert not torch.equal(outs[2].permute(0, 2, 3, 1)[~stopped],
                           outs[0].permute(0, 2, 3, 1)[~stopped])


def test_an_image_gives_the_same_result_alone_and_in_any_batch():
    model = small_model(stop_threshold=0.6)
    torch.manual_seed(1)
    image = torch.randn(1, 3, 64, 64)
    others = [torch.randn(1, 3, 64, 64) * s for s in (0.2, 3.0)]
    with torch.no_grad():
        alone = model(image)
        stops = alone.stats.stop_layer[0].clone()
        batched = model(torch.cat([others[0], image, others[1]]))
        in_batch = batched.stats.stop_layer[1]
    assert len(set(batched.stats.kept[:, 0].tolist())) > 1  # unequal counts
    assert torch.equal(stops, in_batch)
    for a, b in zip(alone, batched):
        torch.testing.assert_close(b[1], a[0], atol=1e-5, rtol=1e-5)


def test_segmentor_prediction_does_not_depend_on_the_batch():
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MMSEG_MODELS.build(dict(
            type='TokenPassEncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor'),
            backbone=dict(type='TokenPassViT', arch=SMALL, img_size=64,
                          out_indices=-1, head_layers=[1, 3], num_classes=5,
                          stop_threshold=0.6, final_norm=True),
            decode_head=dict(type='SegmenterMaskTransformerHead',
                             in_channels=48, channels=48, embed_dims=48,
                             num_heads=3, num_layers=1, num_classes=5),
            test_cfg=ConfigDict(mode='whole')))
    model.init_weights()
    spread_heads(model.backbone)
    model.eval()
    torch.manual_seed(2)
    images = torch.randn(3, 3, 64, 64)
    images[0] *= 4.0

    def predict(batch):
        samples = [SegDataSample(metainfo=dict(img_shape=(64, 64),
                                               ori_shape=(64, 64)))
                   for _ in batch]
        with torch.no_grad(), model.backbone.recording() as record:
            out = model.predict(batch, samples)
        return [o.pred_sem_seg.data for o in out], record.stats

    alone, info_alone = predict(images[1:2])
    together, info = predict(images)
    assert torch.equal(alone[0], together[1])
    assert torch.equal(info_alone.stop_layer[0], info.stop_layer[1])


@pytest.mark.parametrize('budget', [0.8, 0.6, 0.5])
def test_set_budget_spends_at_most_the_budget(budget):
    model = small_model()
    model.set_budget(budget)
    with torch.no_grad():
        info = model(torch.randn(2, 3, 96, 96)).stats
    assert (info.flops_fraction <= budget).all()
    assert (info.flops_fraction > budget - 0.05).all()
    assert info.kept[0].tolist() == info.kept[1].tolist()
    assert info.threshold is None
    # the kept tokens are the least confident ones: stopping is ranked
    assert (info.stop_layer < 5).float().mean() > 0.2


def test_budget_counts_and_costs():
    vit_b = ViTCost(768, 3072, 12, 16)
    assert vit_b.full(196) / 1e9 == pytest.approx(17.6, rel=0.02)  # paper
    counts = budget_keep_counts(vit_b, 1024, [2, 5, 8], 0.5)
    assert counts == sorted(counts, reverse=True)
    assert vit_b.token_pass(1024, [2, 5, 8], counts) <= 0.5 * vit_b.full(1024)
    with pytest.raises(ValueError, match='below what a token-pass ViT'):
        budget_keep_counts(vit_b, 1024, [2, 5, 8], 0.2)
    assert default_head_layers(12) == [2, 5, 8]
    assert default_head_layers(24) == [5, 11, 17]


@pytest.mark.parametrize('budget', [0, -0.5, 1.5, float('nan')])
def test_a_budget_outside_zero_one_is_refused(budget):
    with pytest.raises(ValueError, match='budget must be in'):
        small_model().set_budget(budget)


def test_bad_arguments_name_the_problem():
    with pytest.raises(KeyError, match="Unknown ViT arch 'h'"):
        TokenPassViT('h')
    with pytest.raises(ValueError, match='out_indices'):
        TokenPassViT('s', out_indices=(3, 12))
    with pytest.raises(ValueError, match='head_layers'):
        TokenPassViT('s', head_layers=[2, 11])
    with pytest.raises(KeyError, match='threshold_schedule'):
        TokenPassViT('s', threshold_schedule=dict(start=1.0, stop=5))
    with pytest.raises(ValueError, match='empty batch'):
        small_model()(torch.zeros(0, 3, 64, 64))
    with pytest.raises(ValueError, match='NaN'):
        small_model()(torch.full((1, 3, 32, 32), float('nan')))


def test_packed_attention_is_per_image():
    torch.manual_seed(0)
    qkv = torch.randn(7, 3 * 8)
    split = packed_attention(qkv, [3, 4], num_heads=2)
    assert torch.allclose(split[:3], packed_attention(qkv[:3], [3], 2))
    assert torch.allclose(split[3:], packed_attention(qkv[3:], [4], 2))
    equal = packed_attention(qkv[:6], [3, 3], 2)
    assert torch.allclose(equal[3:], packed_attention(qkv[3:6], [3], 2),
                          atol=1e-6)


def test_token_reconstruction_is_registered_and_restores_order():
    with DefaultScope.overwrite_default_scope('mmseg'):
        recon = MMSEG_MODELS.build(dict(type='TokenReconstruction'))
    frozen = torch.arange(2 * 5 * 1, dtype=torch.float).view(2, 5, 1)
    keep = torch.tensor([[1, 0, 1, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool)
    sel = select_tokens(keep)
    kept = -torch.ones(int(keep.sum()), 1)
    seq = recon.sequence(frozen, kept, sel)
    assert seq[0, :, 0].tolist() == [-1, 1, -1, 3, 4]
    assert seq[1, :, 0].tolist() == [-1, -1, -1, -1, 9]
    grid = recon(frozen, kept, sel, (2, 2))
    assert grid.shape == (2, 1, 2, 2)  # the class token is left out
    assert grid[0].flatten().tolist() == [1, -1, 3, 4]


def _samples(batch, size, classes=5):
    torch.manual_seed(3)
    out = []
    for _ in range(batch):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, classes, (1, size, size)))
        out.append(sample)
    return out


def test_stop_head_losses_reach_the_heads_and_follow_the_schedule():
    model = small_model(stop_threshold=0.5,
                        threshold_schedule=dict(start=1.0, begin=10, end=20))
    model.train()
    hub = MessageHub.get_current_instance()
    x = torch.randn(2, 3, 64, 64)
    thresholds = []
    for it in (0, 15, 30):
        hub.update_info('iter', it)
        info = model(x).stats
        losses = model.aux_losses(info, _samples(2, 64))
        thresholds.append(float(losses['stop_threshold']))
    hub.update_info('iter', 0)
    assert thresholds == pytest.approx([1.0, 0.75, 0.5])
    assert sorted(k for k in losses if k.startswith('loss_')) == [
        'loss_aux_l1', 'loss_aux_l3']
    sum(v for k, v in losses.items() if k.startswith('loss_')).backward()
    for head in model.stop_heads:
        assert head.fc.weight.grad is not None
        assert head.fc.weight.grad.abs().sum() > 0
    assert 0 < float(losses['keep_fraction']) <= 1
    with pytest.raises(ValueError, match='gt_sem_seg'):
        model.aux_losses(info, [SegDataSample(), SegDataSample()])
    model.eval()
    assert model.threshold() == 0.5 and model.aux_losses(info) == {}


def test_distillation_adds_kl_and_feature_losses():
    with DefaultScope.overwrite_default_scope('mmseg'):
        cfg = dict(
            type='TokenPassEncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor'),
            backbone=dict(type='TokenPassViT', arch=SMALL, img_size=64,
                          out_indices=(1, 3, 5), head_layers=[1, 3],
                          num_classes=5, stop_threshold=0.6),
            decode_head=dict(type='SETRUPHead', in_channels=48, channels=16,
                             in_index=2, num_classes=5, num_convs=1,
                             up_scale=4, kernel_size=1,
                             norm_cfg=dict(type='BN')),
            distill=dict(kl_weight=1.0, feature_weight=0.5, temperature=2.0))
        model = MMSEG_MODELS.build(cfg)
        with pytest.raises(KeyError, match='distill takes'):
            MMSEG_MODELS.build(dict(cfg, distill=dict(weight=1.0)))
    model.init_weights()
    spread_heads(model.backbone)
    model.train()
    losses = model.loss(torch.randn(2, 3, 64, 64), _samples(2, 64))
    for name in ('decode.loss_ce', 'loss_distill_kl', 'loss_distill_feat',
                 'loss_aux_l1', 'loss_aux_l3'):
        assert torch.isfinite(losses[name]), name
    assert float(losses['loss_distill_kl']) > 0  # tokens stopped: they differ
    assert float(losses['keep_fraction']) < 1
    total = sum(v for k, v in losses.items() if 'loss' in k)
    total.backward()
    assert model.backbone.layers[5].ln1.weight.grad is not None
    assert model.backbone.budget is None  # the teacher's scope is left
