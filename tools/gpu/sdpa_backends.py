"""Which kernel SDPA picks on this GPU, against FlashAttention varlen.

Why: the packed-attention probe found ``varlen_attn`` (FlashAttention) 1.5x
slower than dense SDPA at equal work. This times dense SDPA per backend
(default, flash, cuDNN, memory-efficient) and ``varlen_attn`` over the same
full-length sequences (bf16, ViT-B heads 12 x 64, forward, the mean
of 20 synchronized calls after 3 warm-ups), so a static peer and a packed
path can be compared on the same kernel. torch only; CUDA only.

    python tools/gpu/sdpa_backends.py
"""
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = (('default', None), ('flash', SDPBackend.FLASH_ATTENTION),
            ('cudnn', SDPBackend.CUDNN_ATTENTION),
            ('efficient', SDPBackend.EFFICIENT_ATTENTION))


def mean_ms(fn, calls=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / calls * 1e3


def row(batch, tokens, heads=12, dims=64):
    q, k, v = (torch.randn(batch, heads, tokens, dims, device='cuda',
                           dtype=torch.bfloat16) for _ in range(3))
    cells = [f'B={batch} N={tokens}']
    for name, backend in BACKENDS:
        def call():
            return F.scaled_dot_product_attention(q, k, v)
        try:
            if backend is None:
                cells.append(f'{name} {mean_ms(call):.3f}')
            else:
                with sdpa_kernel(backend):
                    cells.append(f'{name} {mean_ms(call):.3f}')
        except RuntimeError as error:
            cells.append(f'{name} unavailable ({str(error)[:40]})')
    try:
        from torch.nn.attention.varlen import varlen_attn
        packed = [x.transpose(1, 2).reshape(batch * tokens, heads, dims)
                  .contiguous() for x in (q, k, v)]
        cu = torch.arange(0, (batch + 1) * tokens, tokens, device='cuda',
                          dtype=torch.int32)
        cells.append('varlen {:.3f}'.format(mean_ms(
            lambda: varlen_attn(*packed, cu, cu, tokens, tokens))))
    except (ImportError, RuntimeError) as error:
        cells.append(f'varlen unavailable ({str(error)[:40]})')
    return ' | '.join(cells)


if __name__ == '__main__':
    torch.manual_seed(0)
    for batch, tokens in ((8, 8192), (1, 8192), (8, 1024)):
        print(row(batch, tokens), flush=True)
    print(torch.__version__, torch.cuda.get_device_name())
