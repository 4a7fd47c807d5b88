# Token-pass ViT-B/16 (DoViT) with SETR's progressive-upsampling (PUP) head on
# ADE20K (512x512, 160k iterations): setr_naive_dovit_b_ade20k.py with
# the naive head's 1x1 conv replaced by four 3x3 convs, each upsampling x2.
_base_ = './setr_naive_dovit_b_ade20k.py'
model = dict(decode_head=dict(num_convs=4, up_scale=2, kernel_size=3))
