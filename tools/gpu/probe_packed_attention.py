#!/usr/bin/env python
"""Probe which packed-attention kernel is fastest for dynamic-token ViTs.

Why: dynamic-token ViTs drop tokens per image, so each image in a batch keeps a
different number of tokens and attention runs over *packed variable-length*
token sets. This times the ways plain PyTorch offers (pad + key mask, a Python
loop, nested jagged tensors, FlexAttention with a document mask, FlashAttention
varlen) in bf16 against the static dense peer on ViT-B shapes (12 heads x 64)
so we can pick one. It needs only torch and the standard library.

Per (method, N, B, r), forward under torch.no_grad: `ms` is one attention call
on inputs already in the method's layout; `prep_ms` builds that layout from
packed (T, heads, 64) q/k/v (padding + mask, per-image views, nested wrapping,
cu_seqlens; for `flex` the BlockMask build); `first_s` is the first prep + call
(torch.compile time for `flex`); `peak_mib` the CUDA memory peak of prep + call;
`max_diff` the per-image max |out - loop| in fp32 over kept tokens (> 2e-2 is
"wrong"; `padded_nomask` is a lower bound, never correct). `host_sync` is the
extra ms per layer when each of 12 dense layers ends in `.tolist()`;
`gather_scatter` is index_select of kept tokens from (B*N, 768) + index_copy_.
Times: median wall time of synchronized calls (launch overhead included) after
3 warm-ups, >= 10 calls.

GPU (about 3 minutes on an H200):
    python tools/gpu/probe_packed_attention.py --out probe.json
CPU smoke test:
    python tools/gpu/probe_packed_attention.py --device cpu --tiny --dtype fp32 --out /tmp/probe.json
"""
import argparse
import dataclasses
import functools
import itertools
import json
import platform
import random
import statistics
import sys
import time

import torch
import torch.nn.functional as F

TOL = 2e-2
R_VALUES = (1.0, 0.75, 0.5, 0.25)
CUDA_ONLY = {"varlen"}  # its errors on CPU are recorded as "skipped"
CACHE = {}  # compiled flex functions, chosen varlen backend
FAILED_ON_CPU = {}  # method -> first error seen on CPU (not retried there)


@dataclasses.dataclass
class Problem:
    """One configuration: packed q/k/v of B images with unequal token counts."""
    n: int
    counts: list
    q: torch.Tensor  # (T, heads, dim), images concatenated
    k: torch.Tensor
    v: torch.Tensor
    counts_t: torch.Tensor  # (B,) counts on the device
    offsets: torch.Tensor  # (B + 1,) cumulative counts
    batch_idx: torch.Tensor  # (T,) image of each packed token
    pos_idx: torch.Tensor  # (T,) position of each token inside its image
    kept_idx: torch.Tensor  # (T,) rows of the kept tokens in a (B * N, C) layout


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sample_counts(n, b, r, seed):
    """Kept tokens per image: N when r == 1, else uniform in [0.6, 1.4] * r * N."""
    if r >= 1.0:
        return [n] * b
    rng = random.Random(f"{seed}-{n}-{b}-{r}")
    return [min(n, max(1, round(rng.uniform(0.6 * r * n, 1.4 * r * n)))) for _ in range(b)]


def make_problem(n, b, r, heads, device, dtype, seed=0):
    counts = sample_counts(n, b, r, seed)
    gen = torch.Generator(device).manual_seed(seed)
    q, k, v = (torch.randn(sum(counts), heads, 64, generator=gen, device=device).to(dtype)
               for _ in range(3))
    counts_t = torch.tensor(counts, device=device)
    batch_idx = torch.repeat_interleave(torch.arange(b, device=device), counts_t)
    offsets = torch.tensor([0, *itertools.accumulate(counts)], device=device)
    pos_idx = torch.arange(len(batch_idx), device=device) - offsets[batch_idx]
    kept = [torch.randperm(n, generator=gen, device=device)[:c].sort().values + i * n
            for i, c in enumerate(counts)]
    return Problem(n, counts, q, k, v, counts_t, offsets, batch_idx, pos_idx, torch.cat(kept))


# ---- methods: prepare(p) -> inputs; attend(inputs) -> out; unpack(out, p) -> (T, H, D)

def pad(x, p, length):
    """Packed (T, H, D) -> zero-padded (B, H, length, D) view."""
    out = x.new_zeros(len(p.counts), length, *x.shape[1:])
    out[p.batch_idx, p.pos_idx] = x
    return out.transpose(1, 2)


def prep_padded(p, length=None, mask=False):
    """(B, H, L, D) q/k/v padded to `length` (default: longest image), + key mask."""
    length = length or max(p.counts)
    qkv = tuple(pad(x, p, length) for x in (p.q, p.k, p.v))
    if not mask:
        return qkv
    keep = torch.arange(length, device=p.q.device)[None, :] < p.counts_t[:, None]
    return qkv + (keep[:, None, None, :],)


def attend_sdpa(inputs):
    q, k, v, *mask = inputs
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[0] if mask else None)


def prep_loop(p):
    ends = list(itertools.accumulate(p.counts))
    return [tuple(x[s:e].transpose(0, 1).unsqueeze(0) for x in (p.q, p.k, p.v))
            for s, e in zip([0] + ends[:-1], ends)]


def attend_loop(inputs):
    return [F.scaled_dot_product_attention(*qkv) for qkv in inputs]


def unpack_loop(out, p):
    return torch.cat([o[0].transpose(0, 1) for o in out])


def prep_nested(p):
    """Jagged (B, j, H, D) -> (B, H, j, D); min/max seqlen given so SDPA needs no sync."""
    kw = dict(offsets=p.offsets, min_seqlen=min(p.counts), max_seqlen=max(p.counts))
    return tuple(torch.nested.nested_tensor_from_jagged(x, **kw).transpose(1, 2)
                 for x in (p.q, p.k, p.v))


def flex_functions(device):
    """(compiled flex_attention, create_block_mask compiled on CUDA only), built once."""
    if "flex" not in CACHE:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        build = torch.compile(create_block_mask) if device.type == "cuda" else create_block_mask
        CACHE["flex"] = torch.compile(flex_attention), build
    return CACHE["flex"]


def prep_flex(p):
    """All images as one (1, H, T, D) sequence; a document mask keeps images apart."""
    doc, total = p.batch_idx, len(p.batch_idx)

    def same_image(b, h, q_idx, kv_idx):
        return doc[q_idx] == doc[kv_idx]

    mask = flex_functions(p.q.device)[1](same_image, None, None, total, total, device=p.q.device)
    return tuple(x.transpose(0, 1).unsqueeze(0) for x in (p.q, p.k, p.v)) + (mask,)


def attend_flex(inputs):
    q, k, v, mask = inputs
    return flex_functions(q.device)[0](q, k, v, block_mask=mask)


def varlen_candidates():
    """torch.nn.attention.varlen if this torch has it, then the raw aten op."""
    try:
        from torch.nn.attention.varlen import varlen_attn
        yield "torch.nn.attention.varlen.varlen_attn", varlen_attn
    except ImportError:
        pass
    yield "aten._flash_attention_forward", lambda *args: torch.ops.aten._flash_attention_forward(
        *args, 0.0, False, False)[0]


def prep_varlen(p):
    """(T, H, D) q/k/v + int32 cu_seqlens; picks the first varlen backend that runs."""
    cu, longest = p.offsets.to(torch.int32), max(p.counts)
    args = (p.q, p.k, p.v, cu, cu, longest, longest)
    errors = []
    for name, fn in ([] if "varlen" in CACHE else varlen_candidates()):
        try:
            fn(*args)
            CACHE["varlen"] = name, fn
            break
        except Exception as exc:  # noqa: BLE001 - any failure: try the next backend
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    if "varlen" not in CACHE:
        raise RuntimeError("unavailable: " + " | ".join(errors))
    return args


def unpad(out, p):
    return out.transpose(1, 2)[p.batch_idx, p.pos_idx]


METHODS = {  # name -> (prepare, attend, unpack); `loop` first: it is the reference
    "loop": (prep_loop, attend_loop, unpack_loop),
    "dense": (lambda p: prep_padded(p, p.n), attend_sdpa, unpad),
    "padded_mask": (functools.partial(prep_padded, mask=True), attend_sdpa, unpad),
    "padded_nomask": (prep_padded, attend_sdpa, unpad),
    "nested": (prep_nested, attend_sdpa, lambda out, p: out.transpose(1, 2).values()),
    "flex": (prep_flex, attend_flex, lambda out, p: out[0].transpose(0, 1)),
    "varlen": (prep_varlen, lambda inputs: CACHE["varlen"][1](*inputs), lambda out, p: out),
}


# ---- measurement

def time_ms(fn, device, warmup=3, min_iters=10, max_iters=50, budget_s=0.15):
    """Median wall time (ms) of synchronized calls of fn."""
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < min_iters or (len(times) < max_iters
                                     and time.perf_counter() - start < budget_s):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def peak_mib(fn, device):
    """Peak CUDA memory (MiB) used by fn above what was allocated before it."""
    if device.type != "cuda":
        return None
    sync(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    sync(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def per_image_diff(out, ref, p):
    err = (out.float() - ref.float()).abs().amax(dim=(1, 2))
    return err.new_zeros(len(p.counts)).scatter_reduce(0, p.batch_idx, err, "amax").tolist()


def judge(name, diffs):
    if diffs is None:
        return "ok", "static peer over all N tokens; no reference when r < 1"
    if name == "padded_nomask":
        return "lower_bound", "no mask: output wrong whenever counts differ"
    note = CACHE["varlen"][0] if name == "varlen" else None
    return ("wrong" if max(diffs) > TOL else "ok"), note


def measure(name, p, ref, device):
    """First-call (compile) time, per-image diffs vs ref, median times, peak memory."""
    prepare, attend, unpack = METHODS[name]
    t0 = time.perf_counter()
    inputs = prepare(p)
    out = unpack(attend(inputs), p)
    sync(device)
    first_s = time.perf_counter() - t0
    comparable = name != "dense" or min(p.counts) == p.n  # dense attends over all N tokens
    diffs = per_image_diff(out, out if ref is None else ref, p) if comparable else None
    del out
    ms = time_ms(functools.partial(attend, inputs), device)
    del inputs
    return dict(first_s=first_s, ms=ms, prep_ms=time_ms(functools.partial(prepare, p), device),
                peak_mib=peak_mib(lambda: attend(prepare(p)), device),
                max_diff=None if diffs is None else max(diffs), per_image_diff=diffs)


def run_method(name, p, ref, device):
    """One method's record; its failure is recorded, never raised."""
    if device.type == "cpu" and name in FAILED_ON_CPU:  # CPU is a smoke test: try once
        return dict(method=name, status="skipped", note="failed before: " + FAILED_ON_CPU[name])
    try:
        rec = dict(method=name, **measure(name, p, ref, device))
        rec["status"], rec["note"] = judge(name, rec["per_image_diff"])
    except Exception as exc:  # noqa: BLE001 - one failing method must not stop the rest
        skip = device.type == "cpu" and name in CUDA_ONLY
        rec = dict(method=name, status="skipped" if skip else "error",
                   note=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
        if device.type == "cpu":
            FAILED_ON_CPU[name] = rec["note"]
    return rec


def measure_host_sync(p, device, layers=12):
    """Extra time per layer when every dense attention layer ends in a host sync."""
    q, k, v = prep_padded(p, p.n)

    def run(with_sync):
        for _ in range(layers):
            F.scaled_dot_product_attention(q, k, v)
            if with_sync:
                p.counts_t.tolist()

    extra = (time_ms(lambda: run(True), device) - time_ms(lambda: run(False), device)) / layers
    idle = time_ms(p.counts_t.tolist, device)
    return dict(method="host_sync", ms=extra, status="ok",
                note=f"extra per layer over {layers} dense layers; idle tolist {idle:.4f} ms")


def measure_gather_scatter(p, device, embed):
    x = torch.randn(len(p.counts) * p.n, embed, device=device, dtype=p.q.dtype)
    buf = torch.zeros_like(x)

    def step():
        buf.index_copy_(0, p.kept_idx, x.index_select(0, p.kept_idx))

    step()
    ok = torch.equal(buf[p.kept_idx], x[p.kept_idx])
    return dict(method="gather_scatter", ms=time_ms(step, device), peak_mib=peak_mib(step, device),
                status="ok" if ok else "wrong", note=f"(B*N, {embed}) index_select + index_copy_")


# ---- driver

def environment(device):
    env = dict(torch=torch.__version__, cuda=torch.version.cuda, python=sys.version.split()[0],
               platform=platform.platform(), device=str(device))
    if device.type == "cuda":
        env.update(device_name=torch.cuda.get_device_name(device),
                   cudnn=torch.backends.cudnn.version())
    return env


def raise_recompile_limit(limit=64):
    """Let flex recompile per shape rather than fall back to eager (T x T scores)."""
    cfg = torch._dynamo.config
    for key in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, key):
            setattr(cfg, key, max(getattr(cfg, key), limit))


def run_config(n, b, r, args, device, dtype):
    p = make_problem(n, b, r, args.heads, device, dtype)
    recs, ref = [], None
    for name in METHODS:
        recs.append(run_method(name, p, ref, device))
        if name == "loop" and recs[-1]["status"] == "ok":
            ref = unpack_loop(attend_loop(prep_loop(p)), p)
        print(f"  {name:14s} {recs[-1]['status']:11s} {recs[-1].get('ms', float('nan')):9.3f} ms"
              f"  {recs[-1].get('note') or ''}", file=sys.stderr, flush=True)
    recs += [measure_host_sync(p, device), measure_gather_scatter(p, device, args.heads * 64)]
    return [dict(N=n, B=b, r=r, counts=p.counts, **rec) for rec in recs]


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def markdown(records):
    cols = "N | B | r | counts | method | ms | vs dense | prep ms | first s | peak MiB | max diff | status"
    lines = ["| " + cols + " |", "|" + "---|" * len(cols.split("|"))]
    dense = {(x["N"], x["B"], x["r"]): x.get("ms") for x in records if x["method"] == "dense"}
    for x in records:
        d, ms = dense.get((x["N"], x["B"], x["r"])), x.get("ms")
        speed = d / ms if d and ms and x["method"] not in ("host_sync", "gather_scatter") else None
        cells = [x["N"], x["B"], x["r"], f"{min(x['counts'])}-{max(x['counts'])}", x["method"],
                 fmt(ms, ".3f"), fmt(speed, ".2f"), fmt(x.get("prep_ms"), ".3f"),
                 fmt(x.get("first_s"), ".2f"), fmt(x.get("peak_mib"), ".1f"),
                 fmt(x.get("max_diff"), ".2e"), x["status"]]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"),
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--tiny", action="store_true", help="N=64, B in {1,2}, 2 heads (CPU check)")
    ap.add_argument("--out", help="write environment + records here as JSON")
    args = ap.parse_args()
    args.heads = 2 if args.tiny else 12
    args.sizes = (64,) if args.tiny else (1024, 8192)
    args.batches = (1, 2) if args.tiny else (1, 8)
    return args


def main():
    args = parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    raise_recompile_limit()
    env, records, start = environment(device), [], time.perf_counter()
    print(json.dumps(env), file=sys.stderr)
    with torch.no_grad():
        for n, b, r in itertools.product(args.sizes, args.batches, R_VALUES):
            print(f"N={n} B={b} r={r} ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
            records += run_config(n, b, r, args, device, dtype)
            if args.out:  # rewritten after each config so a killed run keeps its results
                with open(args.out, "w") as f:
                    json.dump(dict(env=env, dtype=args.dtype, records=records), f, indent=1)
    print(markdown(records))
    print(f"\ntotal {time.perf_counter() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
