"""Time superpixel_pool (forward + backward) against two other implementations, side by side.

    python benchmarks/bench_superpixel_pool.py [--device cpu|cuda] [--repeat N] [--json]

Methods (all give the same (sum n_sp, K) result):
  ours   spn_napari.ops.superpixel_pool (flat b*N_max+label rows, index_add / pooling matrix).
  dense  F.interpolate to the map, F.one_hot(sp) (B, H*W, N_max) as float, bmm, divide by counts.
  loop   F.interpolate to the map, then per image, per superpixel: mask, mean (Python loop).
         Too slow for the full batch (its backward writes a dense (K, H*W) gradient per
         superpixel): timed on --loop-batch images (default 1), scaled by B / loop_batch,
         without warm-up; the table says so.

Timing: median (and min) of --repeat runs after warm-up, CUDA synchronised; a method slower than
10 s of timed runs gets fewer runs (the `runs` column). On a shared CPU, min is the steadier number.

Cases (realistic SPN sizes):
  lowres   B=8, K=128, features 16x16 -> superpixel map 256x256, N ~ 300 per image
  sameres  B=8, K=512, features 64x64 == map 64x64, N ~ 300 per image

Bandwidth of our forward. Compulsory bytes, the tensors the op must read or write at least once:
    bytes = |feat| * s + |sp| * 8 (int64 labels) + sum(n_sp) * K * s      (s = element size)
achieved = bytes / t_forward (no autograd), compared with `x.clone()` of a buffer of bytes / 2
(a clone reads and writes it, so it moves the same `bytes`) on the same device:
    fraction = t_clone / t_forward = achieved bandwidth / clone bandwidth.
The op also touches intermediates (int64 row indices, the permuted copy of feat, the
pooling matrix); this makes the fraction a lower bound on how well it uses memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from spn_napari.ops.superpixel_pool import superpixel_pool

from _shared import command_line, cpu_model, write_results  # benchmarks/ is on sys.path

CASES = {
    "lowres": dict(b=8, k=128, h=16, w=16, hh=256, ww=256, n=300),
    "sameres": dict(b=8, k=512, h=64, w=64, hh=64, ww=64, n=300),
}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def voronoi_superpixels(b: int, hh: int, ww: int, n: int, g: torch.Generator) -> tuple[torch.Tensor, list[int]]:
    """(B, H, W) int64 maps of ~n compact regions (nearest of n random seeds), relabelled 0..N_b-1."""
    yy, xx = torch.meshgrid(torch.arange(hh, dtype=torch.float32), torch.arange(ww, dtype=torch.float32),
                            indexing="ij")
    pix = torch.stack([yy.reshape(-1), xx.reshape(-1)], 1)  # (HW, 2)
    maps, counts = [], []
    for _ in range(b):
        n_b = n + int(torch.randint(-10, 11, (1,), generator=g))
        seeds = torch.rand(n_b, 2, generator=g) * torch.tensor([hh, ww], dtype=torch.float32)
        lab = torch.cdist(pix, seeds).argmin(1)
        _, lab = torch.unique(lab, return_inverse=True)  # drop seeds that won no pixel
        maps.append(lab.view(hh, ww))
        counts.append(int(lab.max()) + 1)
    return torch.stack(maps), counts


def upsample(feat: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(feat.shape[-2:]) == tuple(size):
        return feat
    return F.interpolate(feat, size=size, mode="bilinear", align_corners=False)


def pool_dense(feat: torch.Tensor, sp: torch.Tensor, n_sp: list[int]) -> torch.Tensor:
    b, k = feat.shape[:2]
    n_max = max(n_sp)
    up = upsample(feat, tuple(sp.shape[-2:])).reshape(b, k, -1)  # (B, K, HW)
    onehot = F.one_hot(sp.reshape(b, -1), n_max).to(feat.dtype)  # (B, HW, N)
    sums = torch.bmm(onehot.transpose(1, 2), up.transpose(1, 2))  # (B, N, K)
    mean = sums / onehot.sum(1).clamp(min=1)[:, :, None]
    return torch.cat([mean[i, :n] for i, n in enumerate(n_sp)])


def pool_loop(feat: torch.Tensor, sp: torch.Tensor, n_sp: list[int]) -> torch.Tensor:
    up = upsample(feat, tuple(sp.shape[-2:]))
    rows = []
    for i, n in enumerate(n_sp):
        for lab in range(n):
            rows.append(up[i][:, sp[i] == lab].mean(1))
    return torch.stack(rows)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn, device: torch.device, repeat: int, warmup: int = 2, budget_s: float = 10.0) -> dict:
    """Median and min wall time of fn() in ms after warm-up, synchronising on CUDA.

    Slow functions get fewer runs: at most budget_s seconds of timed runs (at least one).
    warmup=0: the first (cold) run is itself timed, for functions too slow to run twice.
    """
    times = []

    def timed():
        t0 = time.perf_counter()
        fn()
        sync(device)
        return (time.perf_counter() - t0) * 1e3

    if warmup == 0:
        times.append(timed())
        first = times[0] / 1e3
    else:
        first = min(timed() for _ in range(warmup)) / 1e3
    runs = max(1, min(repeat, int(budget_s / max(first, 1e-9))))
    times += [timed() for _ in range(runs - len(times))]
    runs = len(times)
    return {"median": statistics.median(times), "min": min(times), "runs": runs}


def fwd_bwd(method, feat: torch.Tensor, sp: torch.Tensor, n_sp: list[int], grad_out: torch.Tensor):
    def run():
        feat.grad = None
        method(feat, sp, n_sp).backward(grad_out)
    return run


def bench_case(name: str, cfg: dict, device: torch.device, repeat: int, loop_batch: int) -> dict:
    g = torch.Generator().manual_seed(0)
    b, k = cfg["b"], cfg["k"]
    sp_cpu, n_sp = voronoi_superpixels(b, cfg["hh"], cfg["ww"], cfg["n"], g)
    sp = sp_cpu.to(device)
    feat = torch.randn(b, k, cfg["h"], cfg["w"], generator=g).to(device).requires_grad_()
    grad_out = torch.randn(sum(n_sp), k, generator=g).to(device)

    # the three implementations agree before anything is timed
    with torch.no_grad():
        ours_out = superpixel_pool(feat, sp, n_sp)
        dense_out = pool_dense(feat, sp, n_sp)
        loop_out = pool_loop(feat[:loop_batch], sp[:loop_batch], n_sp[:loop_batch])
    torch.testing.assert_close(dense_out, ours_out, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(loop_out, ours_out[: sum(n_sp[:loop_batch])], rtol=1e-4, atol=1e-4)
    del ours_out, dense_out, loop_out

    t = {"ours": time_ms(fwd_bwd(superpixel_pool, feat, sp, n_sp, grad_out), device, repeat),
         "dense_onehot": time_ms(fwd_bwd(pool_dense, feat, sp, n_sp, grad_out), device, repeat)}
    lb = min(loop_batch, b)
    feat_lb = feat[:lb].detach().requires_grad_()
    t_lb = time_ms(fwd_bwd(pool_loop, feat_lb, sp[:lb], n_sp[:lb], grad_out[: sum(n_sp[:lb])]),
                   device, repeat, warmup=0 if lb < b else 1)
    t["loop"] = {key: v * b / lb if key != "runs" else v for key, v in t_lb.items()}

    # bandwidth of our forward vs. clone moving the same bytes
    s = feat.element_size()
    nbytes = feat.numel() * s + sp.numel() * 8 + sum(n_sp) * k * s
    with torch.no_grad():
        t_fwd = time_ms(lambda: superpixel_pool(feat, sp, n_sp), device, repeat)["median"]
    buf = torch.empty(nbytes // 2, dtype=torch.uint8, device=device)
    t_clone = time_ms(lambda: buf.clone(), device, repeat)["median"]
    return {
        "case": name, **cfg, "n_sp_mean": sum(n_sp) / b,
        "ms": {m: v["median"] for m, v in t.items()}, "ms_min": {m: v["min"] for m, v in t.items()},
        "runs": {m: v["runs"] for m, v in t.items()},
        "ratio_vs_ours": {m: v["median"] / t["ours"]["median"] for m, v in t.items()},
        "loop_timed_on_batch": lb, "loop_ms_measured": t_lb["median"],
        "forward_ms": t_fwd, "forward_bytes": nbytes,
        "forward_GBps": nbytes / t_fwd / 1e6, "clone_same_bytes_ms": t_clone,
        "clone_GBps": nbytes / t_clone / 1e6, "bandwidth_fraction_of_clone": t_clone / t_fwd,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeat", type=int, default=20, help="timed runs per method (median reported)")
    p.add_argument("--loop-batch", type=int, default=1, help="images the Python loop is timed on")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--out", default=None,
                   help="also write the results as JSON here (e.g. benchmarks/results/superpixel_pool.json)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: CUDA is not available here — use --device cpu.")
    device = torch.device(args.device)
    results = [bench_case(name, cfg, device, args.repeat, args.loop_batch) for name, cfg in CASES.items()]
    info = {"device": device_name(device), "device_type": device.type, "torch": torch.__version__,
            "num_threads": torch.get_num_threads(), "repeat": args.repeat, "dtype": "float32",
            "bytes_formula": "|feat|*s + |sp|*8 + sum(n_sp)*K*s; fraction = t_clone(bytes/2 buffer) / t_forward",
            "cases": results}
    if args.out:
        write_results(args.out, {**info, "command": command_line()})
    if args.json:
        print(json.dumps(info))
        return
    print(f"device: {info['device']} ({device.type}), torch {torch.__version__}, "
          f"threads: {info['num_threads']}, float32, median of {args.repeat}")
    for r in results:
        print(f"\n{r['case']}: B={r['b']} K={r['k']} feat {r['h']}x{r['w']} -> map {r['hh']}x{r['ww']}, "
              f"N~{r['n_sp_mean']:.0f}/image")
        print(f"  {'method':<14}{'ms fwd+bwd':>12}{'(min)':>10}{'runs':>6}{'vs ours':>10}")
        for m in ("ours", "dense_onehot", "loop"):
            note = (f"  (timed on {r['loop_timed_on_batch']} images: {r['loop_ms_measured']:.1f} ms, "
                    f"x{r['b'] / r['loop_timed_on_batch']:g})" if m == "loop" and r["loop_timed_on_batch"] < r["b"]
                    else "")
            print(f"  {m:<14}{r['ms'][m]:>12.2f}{r['ms_min'][m]:>10.2f}{r['runs'][m]:>6}"
                  f"{r['ratio_vs_ours'][m]:>9.1f}x{note}")
        print(f"  ours forward: {r['forward_ms']:.2f} ms, {r['forward_bytes'] / 1e6:.1f} MB compulsory -> "
              f"{r['forward_GBps']:.1f} GB/s; clone of same bytes {r['clone_GBps']:.1f} GB/s; "
              f"fraction {r['bandwidth_fraction_of_clone']:.2f}")
    print(f"\nbytes = {info['bytes_formula']}")


if __name__ == "__main__":
    main()
