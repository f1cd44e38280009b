"""One image-UNet step, ours vs diffusers' ``UNet2DConditionModel``, on the same full-size random weights.

Cases: ``1x4x32x32`` (batch 1) and CFG ``2x4x64x64`` (VD's 512 px latent, uncond + cond),
with ``[B, 77, 768]`` context tokens, fp32 on CPU (and fp16 on CUDA when present). Each
case warms up once, then runs the two models interleaved (order alternating) and reports
the median. On CPU two clocks are kept: wall time and process CPU time (all threads);
CPU time is the steadier of the two on a machine shared with other jobs.

Peak memory on CPU is measured in a child process per model and case: the growth of the
peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) during one forward
after a warm-up, with glibc told to serve every block above 64 KiB by ``mmap``
(``MALLOC_MMAP_THRESHOLD_``) so that freed tensors leave the resident set at once and the
figure is the peak of live activation bytes. Timing runs in the parent with the default
allocator, because forcing ``mmap`` slows down every large allocation. On CUDA the figure
is ``torch.cuda.max_memory_allocated`` above the weights.

Both models share one set of weight tensors (``load_state_dict(assign=True)``), so the
process holds 3.4 GB of weights, not 6.9 GB. It also reports the weights a text->image run
needs (flow-aware loading: time + image data + text context) against the whole UNet.

    python benchmarks/unet_step.py [--repeats 5]   # writes benchmarks/results/unet_step.json
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import diffusers  # noqa: E402
from diffusers import UNet2DConditionModel  # noqa: E402

from vdnodes.model.conditioning import ContextInput  # noqa: E402
from vdnodes.model.keymap import remap  # noqa: E402
from vdnodes.model.unet import UNet, UNetConfig, count_parameters  # noqa: E402
from vdnodes.model.unet_keys import diffusers_keymap  # noqa: E402

CASES = [("1x4x32x32", 1, 32), ("cfg 2x4x64x64", 2, 64)]
SD_IMAGE_UNET = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, attention_head_dim=8,
                     cross_attention_dim=768, flip_sin_to_cos=True, freq_shift=0, sample_size=64)
MiB = 2**20


def random_weights(model: nn.Module, seed: int = 0) -> nn.Module:
    """Materialise a ``meta`` model with realistic-scale random weights (fast: no per-module init)."""
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
                m.weight.fill_(1.0)
                m.bias.zero_()
            elif isinstance(getattr(m, "weight", None), torch.Tensor):
                m.weight.normal_(0.0, m.weight[0].numel() ** -0.5, generator=g)
                if getattr(m, "bias", None) is not None:
                    m.bias.normal_(0.0, 0.02, generator=g)
    return model


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_rss_growth_mib(fn) -> float | None:
    """Growth of peak RSS during ``fn()``; None where /proc cannot be reset (not Linux)."""
    try:
        gc.collect()
        before = rss_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        fn()
        return (rss_kib("VmHWM") - before) / 1024
    except OSError:
        return None


def cuda_peak_mib(fn) -> float:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / MiB


def time_pair(fns: dict, repeats: int, cuda: bool) -> dict[str, dict[str, float]]:
    """Median wall (and CPU) seconds per call, the callables interleaved with alternating order."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for name, fn in fns.items():  # warm-up
        fn()
    sync()
    for r in range(repeats):
        for name in list(fns)[:: 1 if r % 2 == 0 else -1]:
            w0, c0 = time.perf_counter(), time.process_time()
            fns[name]()
            sync()
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
    out = {k: {"wall_s": statistics.median(wall[k]), "wall_min_s": min(wall[k])} for k in fns}
    if not cuda:
        for k in fns:
            out[k]["cpu_s"] = statistics.median(cpu[k])
    return out


def build_models() -> tuple[nn.Module, UNet]:
    """diffusers' image UNet with random weights, and ours (t2i groups) sharing its tensors."""
    with torch.device("meta"):
        ref = UNet2DConditionModel(**SD_IMAGE_UNET)
        ours = UNet(UNetConfig(), data=("image",), context=("text",))  # t2i: image data + text context
    ref = random_weights(ref).eval()
    state, unmatched = remap(ref.state_dict(), diffusers_keymap("image"))
    assert not unmatched
    # The image UNet's attentions serve as our text context group: same shapes, and the
    # same as diffusers' t2i pipeline, which swaps text_unet's attentions into image_unet.
    state = {k.replace("context.image.", "context.text."): v for k, v in state.items()}
    ours.load_state_dict(state, strict=True, assign=True)  # shares the tensors with ref
    return ref, ours.eval()


def step_fns(ref: nn.Module, ours: UNet, batch: int, size: int, device: str, dtype: torch.dtype) -> dict:
    """The two step callables on one fixed random input."""
    g = torch.Generator().manual_seed(batch * 1000 + size)
    x = torch.randn(batch, 4, size, size, generator=g).to(device, dtype)
    t = torch.full((batch,), 500.0, device=device)
    c = torch.randn(batch, 77, 768, generator=g).to(device, dtype)
    return {
        "diffusers": lambda: ref(x, t, c).sample,
        "ours": lambda: ours(x, t, "image", [ContextInput(c, "text")]),
    }


def memory_child(model: str, case: str) -> None:
    """Child-process entry: peak RSS growth of one warm forward of ``model`` on ``case``; prints JSON."""
    ref, ours = build_models()
    _, batch, size = next(c for c in CASES if c[0] == case)
    fn = step_fns(ref, ours, batch, size, "cpu", torch.float32)[model]
    with torch.inference_mode():
        fn()
        print(json.dumps({"peak_mib": peak_rss_growth_mib(fn)}))


@functools.lru_cache(maxsize=None)  # once per (model, case), whatever the thread count
def child_peak_mib(model: str, case: str) -> float | None:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}  # fixed threshold: freed tensors are unmapped
    cmd = [sys.executable, __file__, "--memory-child", model, case]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"]


def run_device(ref: nn.Module, ours: UNet, device: str, dtype: torch.dtype, repeats: int) -> list[dict]:
    cuda = device == "cuda"
    rows = []
    for label, batch, size in CASES:
        fns = step_fns(ref, ours, batch, size, device, dtype)
        with torch.inference_mode():
            diff = (fns["ours"]() - fns["diffusers"]()).abs().max().item()
            times = time_pair(fns, repeats, cuda)
            mem = {k: cuda_peak_mib(fn) if cuda else child_peak_mib(k, label) for k, fn in fns.items()}
        row = {"case": label, "device": device, "dtype": str(dtype).removeprefix("torch."),
               "threads": torch.get_num_threads() if not cuda else None, "max_abs_diff": diff}
        for k in fns:
            row[k] = {**{m: round(v, 4) for m, v in times[k].items()},
                      "peak_mem_mib": None if mem[k] is None else round(mem[k], 1)}
        row["ratio_wall"] = round(times["ours"]["wall_s"] / times["diffusers"]["wall_s"], 3)
        if not cuda:
            row["ratio_cpu"] = round(times["ours"]["cpu_s"] / times["diffusers"]["cpu_s"], 3)
        if mem["ours"] is not None and mem["diffusers"]:
            row["ratio_mem"] = round(mem["ours"] / mem["diffusers"], 3)
        rows.append(row)
        threads = f"{row['threads']}t" if row["threads"] else ""
        print(f"{device} {row['dtype']:8s} {threads:>3} {label:14s} diffusers {times['diffusers']['wall_s']:7.3f}s  "
              f"ours {times['ours']['wall_s']:7.3f}s  wall x{row['ratio_wall']:.3f}"
              + (f"  cpu x{row['ratio_cpu']:.3f}" if not cuda else "")
              + f"  | peak MiB diffusers {row['diffusers']['peak_mem_mib']}  ours {row['ours']['peak_mem_mib']}"
              + f"  | max|diff| {diff:.1e}",
              flush=True)
    return rows


def weights_report() -> dict:
    """Parameters a text->image run needs, vs the whole UNet and the other t2i components."""
    with torch.device("meta"):
        t2i = UNet(UNetConfig(), data=("image",), context=("text",))
        whole = UNet(UNetConfig())
    report = {"t2i_unet": t2i.parameter_counts(), "whole_unet": whole.parameter_counts()}
    for key in ("t2i_unet", "whole_unet"):
        n = report[key]["total"]
        report[key]["fp32_gb"], report[key]["fp16_gb"] = round(n * 4 / 1e9, 3), round(n * 2 / 1e9, 3)
    report["t2i_share_of_unet"] = round(report["t2i_unet"]["total"] / report["whole_unet"]["total"], 3)
    try:  # the other components a t2i run loads (diffusers / transformers reference classes, on meta)
        from diffusers import AutoencoderKL
        from transformers import CLIPTextConfig, CLIPTextModelWithProjection

        with torch.device("meta"):
            vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), latent_channels=4,
                                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                                layers_per_block=2)
            clip = CLIPTextModelWithProjection(CLIPTextConfig(hidden_size=768, intermediate_size=3072,
                                                              num_attention_heads=12, num_hidden_layers=12,
                                                              projection_dim=768))
        report["other_t2i_components"] = {
            "vae_decoder_incl_post_quant_conv": count_parameters(vae.decoder) + count_parameters(vae.post_quant_conv),
            "clip_text_with_projection": count_parameters(clip),
        }
    except Exception as exc:  # a report, not a failure
        report["other_t2i_components"] = f"not measured: {exc}"
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default="", help="CPU thread counts to run, e.g. 2,1 (default: torch's)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "unet_step.json"))
    ap.add_argument("--memory-child", nargs=2, metavar=("MODEL", "CASE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(*args.memory_child)

    default_threads = torch.get_num_threads()
    t0 = time.perf_counter()
    ref, ours = build_models()
    setup_s = time.perf_counter() - t0
    print(f"built both UNets in {setup_s:.1f}s ({count_parameters(ours):,} params, shared); "
          f"torch threads {torch.get_num_threads()}", flush=True)

    results = []
    for threads in [int(n) for n in args.threads.split(",") if n] or [torch.get_num_threads()]:
        torch.set_num_threads(threads)  # memory is measured once per case, with the default threads
        results += run_device(ref, ours, "cpu", torch.float32, args.repeats)
    if torch.cuda.is_available():
        ref.half().cuda()
        ours.half().cuda()  # .half() gives each model its own copy again
        results += run_device(ref, ours, "cuda", torch.float16, args.repeats)

    report = {
        "benchmark": "unet_step",
        "what": "one image-UNet forward (eps), ours vs diffusers UNet2DConditionModel, same random weights",
        "timing": f"warm-up 1, then median of {args.repeats} interleaved runs; ratio = ours / diffusers",
        "memory": "CPU: growth of peak RSS (VmHWM reset via /proc/self/clear_refs) during one warm forward, "
                  "in a child process with glibc MALLOC_MMAP_THRESHOLD_=65536; "
                  "CUDA: max_memory_allocated above the weights",
        "results": results,
        "weights": weights_report(),
        "env": {
            "torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch_default_threads": default_threads,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "setup_s": round(setup_s, 1),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    w = report["weights"]
    print(f"t2i UNet weights {w['t2i_unet']['total']:,} params ({w['t2i_unet']['fp32_gb']} GB fp32) "
          f"= {w['t2i_share_of_unet']:.1%} of the whole UNet ({w['whole_unet']['total']:,}); "
          f"other t2i parts: {w['other_t2i_components']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
