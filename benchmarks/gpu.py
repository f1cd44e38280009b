"""VD on a GPU, ours vs diffusers, on the same full-size random weights: one command, about 5 minutes.

    python benchmarks/gpu.py                 # one CUDA GPU; writes benchmarks/results/gpu.json
    python benchmarks/gpu.py --smoke         # tiny configs on CPU, a few steps: tests every code path

Sections (each one's failure is recorded in the JSON and the run goes on; the file is rewritten
after every section, so a run cut short keeps what it measured):

- ``matmul_peak``: the GPU's measured dense matmul rate (8192^3, fp16 and bf16), the yardstick.
- ``image_unet``: one CFG step (batch 2, ``[2, 77, 768]`` text tokens) at 512 and 1024 px in fp16
  and bf16, ours vs ``UNet2DConditionModel``, interleaved: median time, peak memory above the
  weights, max abs difference, counted FLOPs (``torch.utils.flop_counter``), achieved TFLOP/s and
  its share of ``matmul_peak``. Targets (fp16, 512 px): time <= 0.9x, memory <= 1.0x diffusers'.
- ``text_unet``: the same for the text UNet vs ``UNetFlatConditionModel`` (batch 2).
- ``channels_last`` and ``compile``: ours at fp16 512 px with each option vs plain; compile time.
- ``pipelines``: full VD saved as safetensors (fp16); load time; 50-step text->image + decode,
  dual-guided + decode, image->text + Optimus decode: wall time and peak memory.
- ``offload``: the same text->image and image->text with weights in CPU memory and an 8 GB
  device budget (vdnodes/model/offload.py): peak device memory and the time cost.
- ``vae``: decode at 1024 and 2048 px, untiled vs tiled: time and peak memory.

Peak memory is ``torch.cuda.max_memory_allocated`` above what was allocated before the call
(in smoke mode on CPU: not measured). Both UNets share one set of weight tensors.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from vdnodes.model.conditioning import ContextInput  # noqa: E402
from vdnodes.model.configs import full_config, tiny_config  # noqa: E402
from vdnodes.model.keymap import fit_shape, remap  # noqa: E402
from vdnodes.model.unet import UNet  # noqa: E402
from vdnodes.model.unet_keys import DIFFUSERS_TEXT_UNET_IGNORE, diffusers_keymap  # noqa: E402

MiB = 2**20
SECTIONS = ("matmul_peak", "image_unet", "text_unet", "channels_last", "compile", "pipelines", "offload", "vae")


class Bench:
    """Sizes, device and the small helpers every section shares."""

    def __init__(self, smoke: bool, repeats: int) -> None:
        self.smoke = smoke
        self.device = "cpu" if smoke else "cuda"
        self.cuda = self.device == "cuda"
        self.config = tiny_config() if smoke else full_config()
        self.repeats = repeats
        self.dtypes = [torch.float32, torch.bfloat16] if smoke else [torch.float16, torch.bfloat16]
        self.sides = [8, 16] if smoke else [64, 128]  # latent sides: 512 and 1024 px at full size
        self.steps = 2 if smoke else 50
        self.tokens = 77
        self.offload_gb = 0.002 if smoke else 8.0

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def timed(self, fn: Callable[[], object]) -> tuple[object, float]:
        self.sync()
        t0 = time.perf_counter()
        out = fn()
        self.sync()
        return out, time.perf_counter() - t0

    def peak_mib(self, fn: Callable[[], object]) -> float | None:
        """Peak allocated memory above the current allocation during ``fn()`` (CUDA only)."""
        if not self.cuda:
            fn()
            return None
        self.sync()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        self.sync()
        return round((torch.cuda.max_memory_allocated() - base) / MiB, 1)

    def interleaved(self, fns: dict[str, Callable[[], object]]) -> dict[str, float]:
        """Median seconds per call, the callables interleaved with alternating order, after a warm-up."""
        for fn in fns.values():
            fn()
        times: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(self.repeats):
            for name in list(fns)[:: 1 if r % 2 == 0 else -1]:
                times[name].append(self.timed(fns[name])[1])
        return {k: statistics.median(v) for k, v in times.items()}


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call as PyTorch counts them (matmuls, convolutions, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def random_(model: nn.Module, device: str, seed: int = 0) -> nn.Module:
    """Materialise a ``meta`` model on ``device`` with realistic-scale random weights, fast."""
    model = model.to_empty(device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim > 1:
                p.normal_(0.0, p[0].numel() ** -0.5, generator=g)
            else:
                p.copy_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
                p.add_(torch.randn(p.shape, generator=g, device=device), alpha=0.02)
    return model


def diffusers_kwargs(b: Bench) -> dict:
    c = b.config.unet
    return dict(block_out_channels=tuple(c.model_channels * m for m in c.channel_mult),
                layers_per_block=c.num_res_blocks, attention_head_dim=c.heads, cross_attention_dim=c.context_dim,
                norm_num_groups=c.norm_groups, flip_sin_to_cos=True, freq_shift=0)


def paired_unets(b: Bench, modality: str, dtype: torch.dtype) -> tuple[nn.Module, UNet]:
    """diffusers' UNet for ``modality`` with random weights, and ours sharing its tensors."""
    from diffusers import UNet2DConditionModel
    from diffusers.pipelines.deprecated.versatile_diffusion.modeling_text_unet import UNetFlatConditionModel

    c = b.config.unet
    with torch.device("meta"):
        if modality == "image":
            ref = UNet2DConditionModel(**diffusers_kwargs(b))
        else:
            ref = UNetFlatConditionModel(in_channels=(c.text_dim, 1, 1), out_channels=(c.text_dim, 1, 1),
                                         down_block_types=("CrossAttnDownBlockFlat",) * 3 + ("DownBlockFlat",),
                                         up_block_types=("UpBlockFlat",) + ("CrossAttnUpBlockFlat",) * 3,
                                         **diffusers_kwargs(b))
        ours = UNet(c, data=(modality,), context=(modality,))
    ref = random_(ref, b.device).to(dtype).eval()
    ignore = DIFFUSERS_TEXT_UNET_IGNORE if modality == "text" else ()
    state, unmatched = remap(ref.state_dict(), diffusers_keymap(modality, c), ignore=ignore)
    assert not unmatched, unmatched[:5]
    if modality == "text":  # VD has one time MLP; diffusers copies it into both UNets (the text keymap skips it)
        state.update({f"time_embed.{k}": v for k, v in ref.time_embedding.state_dict().items()})
    shapes = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ours.load_state_dict({k: fit_shape(v, shapes[k]) for k, v in state.items()}, strict=True, assign=True)
    return ref, ours.to(b.device).eval()


def step_inputs(b: Bench, modality: str, side: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    c = b.config.unet
    g = torch.Generator().manual_seed(side)
    shape = (2, c.image_channels, side, side) if modality == "image" else (2, c.text_dim)
    x = torch.randn(*shape, generator=g).to(b.device, dtype)
    ctx = torch.randn(2, b.tokens, c.context_dim, generator=g).to(b.device, dtype)
    return x, torch.full((2,), 500.0, device=b.device), ctx


def compare_step(b: Bench, modality: str, dtype: torch.dtype, side: int, peak_tflops: float | None) -> dict:
    ref, ours = paired_unets(b, modality, dtype)
    x, t, ctx = step_inputs(b, modality, side, dtype)
    ref_x = x if modality == "image" else x[:, :, None, None]
    fns = {"diffusers": lambda: ref(ref_x, t, ctx).sample,
           "ours": lambda: ours(x, t, modality, [ContextInput(ctx, modality)])}
    with torch.inference_mode():
        diff = (fns["ours"]().float() - fns["diffusers"]().float().reshape(x.shape)).abs().max().item()
        times = b.interleaved(fns)
        peaks = {k: b.peak_mib(fn) for k, fn in fns.items()}
        flops = counted_flops(fns["ours"])
    row = {"dtype": str(dtype).removeprefix("torch."), "latent": list(x.shape), "max_abs_diff": diff,
           "gflop_counted": round(flops / 1e9, 1)}
    for k in fns:
        tflops = flops / times[k] / 1e12
        row[k] = {"step_ms": round(times[k] * 1e3, 3), "peak_mib_above_weights": peaks[k],
                  "tflops": round(tflops, 2),
                  "share_of_matmul_peak": round(tflops / peak_tflops, 3) if peak_tflops else None}
    row["ratio_time"] = round(times["ours"] / times["diffusers"], 3)
    if peaks["ours"] is not None and peaks["diffusers"]:
        row["ratio_mem"] = round(peaks["ours"] / peaks["diffusers"], 3)
    del ref, ours
    return row


# ------------------------------------------------------------------------------------------ sections

def matmul_peak(b: Bench) -> dict:
    n = 512 if b.smoke else 8192
    out = {}
    for dtype in b.dtypes:
        a, c = (torch.randn(n, n, device=b.device, dtype=dtype) for _ in range(2))
        with torch.inference_mode():
            s = b.interleaved({"mm": lambda: a @ c})["mm"]
        out[str(dtype).removeprefix("torch.")] = {"n": n, "tflops": round(2 * n**3 / s / 1e12, 2)}
    return out


def image_unet(b: Bench, peaks: dict) -> list[dict]:
    return [compare_step(b, "image", dt, side, peaks.get(str(dt).removeprefix("torch."), {}).get("tflops"))
            for dt in b.dtypes for side in b.sides]


def text_unet(b: Bench, peaks: dict) -> list[dict]:
    return [compare_step(b, "text", dt, 0, peaks.get(str(dt).removeprefix("torch."), {}).get("tflops"))
            for dt in b.dtypes]


def _empty_unet(b: Bench, dtype: torch.dtype) -> UNet:
    """An image UNet with uninitialised weights on the device (filled by ``load_state_dict``)."""
    with torch.device("meta"):
        unet = UNet(b.config.unet, data=("image",), context=("image",))
    return unet.to_empty(device=b.device).to(dtype).eval()


def _plain_and_optioned(b: Bench, apply: Callable[[UNet], object]) -> tuple[torch.dtype, int, Callable, Callable]:
    """(dtype, latent side, a plain step, the same step on a copy of the UNet that ``apply`` changed)."""
    dtype, side = b.dtypes[0], b.sides[0]
    _, plain = paired_unets(b, "image", dtype)
    x, t, ctx = step_inputs(b, "image", side, dtype)
    other = _empty_unet(b, dtype)
    other.load_state_dict(plain.state_dict())
    apply(other)
    step = lambda m: lambda: m(x, t, "image", [ContextInput(ctx, "image")])  # noqa: E731
    return dtype, side, step(plain), step(other)


def channels_last(b: Bench) -> dict:
    from vdnodes.model import accel

    dtype, side, plain, fast = _plain_and_optioned(b, accel.use_channels_last)
    fns = {"plain": plain, "channels_last": fast}
    with torch.inference_mode():
        diff = (fns["plain"]().float() - fns["channels_last"]().float()).abs().max().item()
        times = b.interleaved(fns)
    return {"dtype": str(dtype).removeprefix("torch."), "latent_side": side, "max_abs_diff": diff,
            **{f"{k}_ms": round(v * 1e3, 3) for k, v in times.items()},
            "speedup": round(times["plain"] / times["channels_last"], 3)}


def compile_(b: Bench) -> dict:
    from vdnodes.model import accel

    backend = "aot_eager" if b.smoke else "inductor"  # smoke: no C++/Triton build, same tracing
    dtype, side, eager, compiled = _plain_and_optioned(b, lambda m: accel.compile_module(m, backend))
    fns = {"eager": eager, "compiled": compiled}
    with torch.inference_mode():
        _, compile_s = b.timed(fns["compiled"])
        diff = (fns["eager"]().float() - fns["compiled"]().float()).abs().max().item()
        times = b.interleaved(fns)
    return {"backend": backend, "dtype": str(dtype).removeprefix("torch."), "latent_side": side,
            "first_call_s": round(compile_s, 1), "max_abs_diff": diff,
            **{f"{k}_ms": round(v * 1e3, 3) for k, v in times.items()},
            "speedup": round(times["eager"] / times["compiled"], 3)}


def _full_model(b: Bench, dtype: torch.dtype, folder: Path) -> tuple[Path, float]:
    """Random full VD saved as our safetensors file; returns (path, seconds to build and save)."""
    from vdnodes.model import vd

    t0 = time.perf_counter()
    with torch.device(b.device):  # PyTorch's own init, on the device: buffers (position ids) stay valid
        model = vd.VersatileDiffusion(b.config, vd.COMPONENTS).to(dtype).eval()
    path = vd.save_vd(model.to("cpu"), folder / "vd-random.safetensors")
    del model
    return path, time.perf_counter() - t0


def _load(b: Bench, path: Path, dtype: torch.dtype, device: str) -> nn.Module:
    from vdnodes.model import vd
    from vdnodes.model.word_tokenizers import word_tokenizers

    model = vd.load_vd(path, device=device, dtype=dtype)
    enc, dec = word_tokenizers(b.config.optimus.enc_vocab_size, b.config.optimus.dec_vocab_size)
    model.vae_text.encoder_tokenizer, model.vae_text.decoder_tokenizer = enc, dec
    return model


def _flows(b: Bench, model: nn.Module, dtype: torch.dtype, use: Callable[[set[str]], None]) -> dict:
    """text->image, dual-guided and image->text as the nodes run them; ``use`` makes components resident."""
    from vdnodes.model import sampling

    device, side = b.device, b.sides[0]
    gen = lambda: torch.Generator("cpu").manual_seed(0)  # noqa: E731

    def denoise(xtype: str, conds: list[ContextInput], unconds: list[ContextInput], shape: tuple) -> torch.Tensor:
        use({"unet.time", f"unet.data.{xtype}", *(f"unet.context.{c.modality}" for c in conds)})

        def unet_fn(x, t, xt, contexts):
            contexts = [c.with_tokens(c.tokens.to(device=device, dtype=dtype)) for c in contexts]
            return model.unet(x.to(dtype), t, xt, contexts).float()

        denoiser = sampling.cfg_denoiser(unet_fn, xtype, conds, unconds, 7.5)
        x = sampling.initial_noise(shape, gen(), torch.float32, device)
        return sampling.sample("ddim", denoiser, x, b.steps, generator=gen())

    def text_context(prompt: str, weight: float = 1.0) -> tuple[ContextInput, ContextInput]:
        use({"clip_text"})
        return (ContextInput(model.clip_text.encode([prompt]), "text", weight),
                ContextInput(model.clip_text.encode([""]), "text", weight))

    def image_context(weight: float = 1.0) -> tuple[ContextInput, ContextInput]:
        use({"clip_image"})
        tokens = model.clip_image.encode(torch.rand(1, 3, 512, 512, generator=gen()).to(device, dtype))
        return ContextInput(tokens, "image", weight), ContextInput(torch.zeros_like(tokens), "image", weight)

    def decode_image(z: torch.Tensor) -> torch.Tensor:
        use({"vae_image.decoder"})
        return model.vae_image.decode(z.to(dtype))

    image_shape = (1, b.config.unet.image_channels, side, side)
    out = {}
    with torch.inference_mode():
        def t2i():
            c, u = text_context("a red circle on a blue background")
            return decode_image(denoise("image", [c], [u], image_shape))

        def dual():
            (tc, tu), (ic, iu) = text_context("a red triangle", 0.5), image_context(0.5)
            return decode_image(denoise("image", [ic, tc], [iu, tu], image_shape))

        def i2t():
            c, u = image_context()
            z = denoise("text", [c], [u], (1, b.config.unet.text_dim))
            use({"vae_text.decoder"})
            return model.vae_text.decode(z, generator=gen(), max_tokens=30)

        for name, fn in (("t2i_decode", t2i), ("dual_guided_decode", dual), ("i2t_optimus", i2t)):
            got = {}
            peak, seconds = b.timed(lambda: b.peak_mib(lambda: got.setdefault("out", fn())))  # noqa: B023
            result = got["out"]
            out[name] = {"steps": b.steps, "wall_s": round(seconds, 3), "peak_mib_above_resident": peak,
                         "output": list(result.shape) if isinstance(result, torch.Tensor) else result}
    return out


def pipelines(b: Bench, folder: Path) -> dict:
    dtype = b.dtypes[0]
    path, build_s = _full_model(b, dtype, folder)
    if b.cuda:
        torch.cuda.empty_cache()
    model, load_s = b.timed(lambda: _load(b, path, dtype, b.device))
    weights = torch.cuda.memory_allocated() / MiB if b.cuda else None
    out = {"dtype": str(dtype).removeprefix("torch."), "file_gb": round(path.stat().st_size / 1e9, 2),
           "build_and_save_s": round(build_s, 1), "load_s": round(load_s, 2),
           "weights_mib_on_device": None if weights is None else round(weights, 1)}
    out.update(_flows(b, model, dtype, use=lambda comps: None))
    return out


def offload(b: Bench, folder: Path) -> dict:
    from vdnodes.model.offload import GroupOffload

    dtype = b.dtypes[0]
    path = folder / "vd-random.safetensors"
    if not path.exists():
        path, _ = _full_model(b, dtype, folder)
    if b.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = _load(b, path, dtype, "cpu")
    off = GroupOffload(model, b.device, int(b.offload_gb * 1e9))
    base = torch.cuda.memory_allocated() if b.cuda else 0
    out = {"budget_gb": b.offload_gb}
    out.update(_flows(b, model, dtype, use=lambda comps: off.use(sorted(comps))))
    out["moves"] = off.report()
    if b.cuda:
        out["device_peak_mib_total"] = round((torch.cuda.max_memory_allocated() - base) / MiB, 1)
    return out


def vae(b: Bench) -> list[dict]:
    from vdnodes.model.vae import ImageVAE

    dtype = b.dtypes[0]
    with torch.device("meta"):
        model = ImageVAE(b.config.vae)
    model = random_(model, b.device).to(dtype).eval()
    rows = []
    for side in ([16, 32] if b.smoke else [128, 256]):  # 1024 and 2048 px at full size
        z = torch.randn(1, 4, side, side, generator=torch.Generator().manual_seed(0)).to(b.device, dtype)
        row = {"pixels": side * b.config.vae.downsample_factor}
        with torch.inference_mode():
            for tiled in (False, True):
                key = "tiled" if tiled else "untiled"
                try:
                    peak = {}
                    _, s = b.timed(lambda: peak.setdefault("mib", b.peak_mib(lambda: model.decode(z, tiled=tiled))))
                    row[key] = {"s": round(s, 3), "peak_mib": peak["mib"]}
                except torch.cuda.OutOfMemoryError as e:
                    row[key] = {"error": f"out of memory: {e}"[:300]}
                    torch.cuda.empty_cache()
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ main

def environment(b: Bench) -> dict:
    import diffusers

    env = {"torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
           "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "smoke": b.smoke}
    if b.cuda:
        props = torch.cuda.get_device_properties(0)
        env.update(gpu=props.name, gpu_mem_gib=round(props.total_memory / 2**30, 1),
                   cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny configs on CPU, a few steps (tests the code)")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"sections to run, from {','.join(SECTIONS)}")
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 10; smoke 1)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu.json"))
    args = ap.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        print("benchmarks/gpu.py needs a CUDA GPU (or --smoke for a CPU check of the code)", file=sys.stderr)
        return 2
    b = Bench(args.smoke, args.repeats or (1 if args.smoke else 10))
    only = [s for s in args.only.split(",") if s]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        ap.error(f"unknown sections {unknown}")
    if b.cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    report: dict = {"benchmark": "gpu", "env": environment(b), "repeats": b.repeats, "sections": {}}
    out = Path(args.out)
    peaks: dict = {}
    with tempfile.TemporaryDirectory(prefix="vd-gpu-bench-") as tmp:
        runs = {"matmul_peak": lambda: matmul_peak(b), "image_unet": lambda: image_unet(b, peaks),
                "text_unet": lambda: text_unet(b, peaks), "channels_last": lambda: channels_last(b),
                "compile": lambda: compile_(b), "pipelines": lambda: pipelines(b, Path(tmp)),
                "offload": lambda: offload(b, Path(tmp)), "vae": lambda: vae(b)}
        for name in [s for s in SECTIONS if s in only]:
            t0 = time.perf_counter()
            try:
                result = runs[name]()
                if name == "matmul_peak":
                    peaks.update(result)
                report["sections"][name] = {"result": result}
            except Exception as e:  # one section's failure must not cost the others
                report["sections"][name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
            report["sections"][name]["section_s"] = round(time.perf_counter() - t0, 1)
            print(f"{name}: {json.dumps(report['sections'][name].get('result', report['sections'][name]))[:600]}",
                  flush=True)
            if b.cuda:
                with contextlib.suppress(Exception):
                    torch.cuda.empty_cache()
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp_out = out.with_suffix(".json.tmp")
            tmp_out.write_text(json.dumps(report, indent=2) + "\n")
            os.replace(tmp_out, out)
    failed = [n for n, s in report["sections"].items() if "error" in s]
    print(f"wrote {out}" + (f"; failed sections: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
