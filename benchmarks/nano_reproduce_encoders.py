"""vd-nano reproducibility in under an hour: train-nano's encoder stages from scratch, compared with the shipped file.

Runs the image VAE, CLIP and Optimus stages exactly as ``vdnodes train-nano`` does (the
``full`` budget, seed 0, its checkpoints, so an interrupted run resumes) and compares each
trained component with the shipped ``vd-nano.safetensors`` bit for bit (as fp16, the way the
file holds it), and each stage's result (the latent scales, the self-checks) with the
training record in the file. The UNet stage, the other 70 minutes of a full run, trains on
these encoders and is bit for bit a file's UNet when its encoders are (tested on a shortened
run); ``vdnodes train-nano`` compares a whole run at its end.

    python benchmarks/nano_reproduce_encoders.py --out DIR [--stages vae,clip,optimus] [--threads 2]
    # writes benchmarks/results/nano_reproduce_encoders.json (or --results FILE)

Bit-for-bit agreement needs the shipped run's CPU type, thread count and torch version
(docs/nano.md section 4 names them); the step seconds are this host's.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "nano_reproduce_encoders.json"
ENCODER_STAGES = ("vae", "clip", "optimus")


def host() -> str:
    """CPU family/model, core count and whether it has AVX-512 (what decides the bits and the speed)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return "unknown"
    avx512 = "AVX-512" if " avx512f" in f" {fields.get('flags', '')}" else "no AVX-512"
    return (f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model "
            f"{fields.get('model', '?')}), {os.cpu_count()} cores, {avx512}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the stage checkpoints (resumable)")
    parser.add_argument("--stages", default=",".join(ENCODER_STAGES))
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the shipped run used 2)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    stages = args.stages.split(",")
    if not stages or any(s not in ENCODER_STAGES for s in stages):
        parser.error(f"--stages: choose from {', '.join(ENCODER_STAGES)}")

    import torch
    from safetensors.torch import load_file

    from vdnodes.core.fileio import atomic_write_text
    from vdnodes.model import vd as vdm
    from vdnodes.nano import train as tr
    from vdnodes.nano.config import nano_config
    from vdnodes.nano.weights import NANO_WEIGHTS, training_record

    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    config, plan, seed = copy.deepcopy(nano_config()), tr.BUDGETS["full"], 0
    info = tr.tokenizer_info(config)
    checkpoints = tr._Checkpoints(args.out / "checkpoints", tr.stage_fingerprints(config, plan, seed, info))
    clip_tok, optimus_tok = tr.build_tokenizers(info)
    shipped, record = load_file(str(NANO_WEIGHTS)), training_record()
    out: dict[str, Any] = {"what": __doc__.splitlines()[0], "host": host(), "torch": torch.__version__,
                           "threads": args.threads, "stages": {}}
    with torch.random.fork_rng(devices=[]):  # as train_nano: the seed, then the model, then the stages
        torch.manual_seed(seed)
        model = vdm.build(config, vdm.COMPONENTS, device=device, clip_tokenizer=clip_tok,
                          optimus_tokenizers=tuple(optimus_tok)).eval()
        for index, name in enumerate(ENCODER_STAGES[:max(ENCODER_STAGES.index(s) for s in stages) + 1]):
            stage = tr.STAGE_CLASSES[name](model, plan, seed, device, progress=True)
            result = tr._run_stage(stage, checkpoints, checkpoint_every=plan.checkpoint_every, progress=True,
                                   on_step=None, index=index)
            state = json.loads((checkpoints.folder / f"{name}.json").read_text())
            weights = model.state_dict()
            names = [k for k in shipped if k.startswith(stage.prefixes)]
            differing = [k for k in names if not torch.equal(weights[k].to(shipped[k].dtype), shipped[k])]
            out["stages"][name] = {
                "tensors": len(names), "bit_identical": len(names) - len(differing), "differing": differing[:10],
                "result": result, "result_equals_shipped_record": result == record["results"][name],
                "step_seconds": round(state["seconds"], 1), "steps": state["steps"]}
            print(f"{name:8s} {len(names) - len(differing)} of {len(names)} tensors bit for bit the shipped "
                  f"file's; result {'equals' if result == record['results'][name] else 'differs from'} its "
                  f"record; {state['seconds'] / 60:.1f} min of steps", flush=True)
    atomic_write_text(args.results, json.dumps(out, indent=1) + "\n")
    print(f"written to {args.results}")


if __name__ == "__main__":
    main()
