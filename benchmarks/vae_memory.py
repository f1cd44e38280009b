"""Peak memory of a full-size kl-f8 decode on CPU, untiled vs tiled, up to 2048 x 2048 px.

Each case runs in a fresh child process (random full-size weights, fp32, one warm-up decode of a
small latent first) and reports the growth of the peak resident set (``VmHWM`` reset through
``/proc/self/clear_refs``) during the decode, with glibc told to unmap every freed block above
64 KiB so the figure is the peak of live bytes, and the decode's wall and CPU time. It also fits
``vae_tiling.DECODE_BYTES_PER_PIXEL`` (the automatic tiling choice) from the untiled cases.

    python benchmarks/vae_memory.py [--cases untiled:512,untiled:1024,tiled:1024,tiled:2048]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(mode: str, pixels: int) -> None:
    import torch

    from vdnodes.model.vae import ImageVAE

    torch.manual_seed(0)
    with torch.device("meta"):
        vae = ImageVAE()
    vae = vae.to_empty(device="cpu").eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.normal_(0, p[0].numel() ** -0.5) if p.ndim > 1 else p.fill_(0.0)
        for m in vae.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.fill_(1.0)
    tiled = mode == "tiled"
    side = pixels // 8

    def rss(field: str) -> int:
        return next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith(field + ":"))

    with torch.inference_mode():
        vae.decode(torch.randn(1, 4, 16, 16), tiled=tiled)  # warm-up: lazy library state
        z = torch.randn(1, 4, side, side)
        before = rss("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        w0, c0 = time.perf_counter(), time.process_time()
        vae.decode(z, tiled=tiled)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        print(json.dumps({"peak_mib": round((rss("VmHWM") - before) / 1024, 1), "wall_s": round(wall, 1),
                          "cpu_s": round(cpu, 1), "weights_rss_mib": round(before / 1024, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default="untiled:512,untiled:1024,tiled:1024,tiled:2048")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vae_memory.json"))
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]))
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "HF_HUB_OFFLINE": "1"}
    rows = []
    for case in args.cases.split(","):
        mode, pixels = case.split(":")
        proc = subprocess.run([sys.executable, __file__, "--child", mode, pixels], env=env,
                              capture_output=True, text=True, check=True)
        row = {"mode": mode, "pixels": int(pixels), **json.loads(proc.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(row, flush=True)
        write(args.out, rows)


def write(path: str, rows: list[dict]) -> None:
    """The report so far (rewritten after every case: a long run cut short keeps its rows)."""
    untiled = [r for r in rows if r["mode"] == "untiled"]
    fit = max(r["peak_mib"] * 2**20 / r["pixels"] ** 2 for r in untiled) if untiled else None
    import torch

    report = {"benchmark": "vae_memory", "what": "full-size kl-f8 decode, fp32, CPU, random weights",
              "memory": "peak RSS growth (VmHWM reset) during one decode after a warm-up, child process, "
                        "MALLOC_MMAP_THRESHOLD_=65536",
              "tiles": "latent tile 64 (512 px), overlap 16 (128 px), one GroupNorm-moment pass + the blended pass",
              "results": rows, "untiled_bytes_per_pixel_fp32": None if fit is None else round(fit),
              "env": {"torch": torch.__version__, "python": platform.python_version(),
                      "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                      "threads": torch.get_num_threads()}}
    out = Path(path)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
