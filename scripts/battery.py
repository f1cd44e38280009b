"""The slow half of the hardening battery: real-size bad inputs and hard stops, against the CLI.

    .venv/bin/python scripts/battery.py [--keep DIR]

Each case runs ``vdnodes`` in fresh processes and checks what a user would: the exit code,
that the message is one paragraph naming the problem (never "internal error" or a
traceback), that nothing hangs, and that output folders hold only complete files. One line
per case; exit status 1 if any case misbehaves. The fast cases live in
tests/cli/test_hardening.py (docs/reliability.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


def vdnodes(*args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vdnodes", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV, cwd=cwd)


def clean_error(p: subprocess.CompletedProcess, *needles: str) -> str | None:
    """None if ``p`` is an exit-2 one-paragraph error holding every needle, else what is wrong."""
    if p.returncode != 2:
        return f"exit {p.returncode}, expected 2: {p.stderr[-300:]}"
    if "internal error" in p.stderr or "Traceback" in p.stderr:
        return f"not a clean message: {p.stderr[-300:]}"
    missing = [n for n in needles if n not in p.stderr]
    return f"message lacks {missing}: {p.stderr[-300:]}" if missing else None


def only_complete_pngs(folder: Path, count: int) -> str | None:
    from PIL import Image

    files = sorted(folder.iterdir()) if folder.exists() else []
    hidden = [f.name for f in files if f.name.startswith(".")]
    if hidden:
        return f"left temp files {hidden}"
    if len(files) != count:
        return f"{len(files)} files, expected {count}"
    for f in files:
        with Image.open(f) as im:
            im.load()
    return None


def hello(work: Path, **params: object) -> Path:
    data = json.loads((ROOT / "graphs" / "hello.json").read_text())
    for ref, value in params.items():
        nid, name = ref.split(".")
        data["nodes"][nid]["params"][name] = value
    folder = work / "graph"
    if not (folder / "inputs").exists():
        shutil.copytree(ROOT / "graphs" / "inputs", folder / "inputs")
    path = folder / "hello.json"
    path.write_text(json.dumps(data))
    return path


# -- cases --------------------------------------------------------------------------------------

def real_bomb(work: Path, side: int) -> str | None:
    from PIL import Image

    path = work / f"bomb{side}.png"
    Image.new("1", (side, side)).save(path)  # a few hundred KB on disk, side^2 pixels
    t0 = time.monotonic()
    p = vdnodes("run", str(hello(work, **{"scene.path": str(path)})), "--out", str(work / "o"))
    if time.monotonic() - t0 > 60:
        return "took over a minute"
    return clean_error(p, "megapixel limit", "VDNODES_MAX_IMAGE_PIXELS")


def concurrent_runs(work: Path, n: int = 16) -> str | None:
    graph, out = hello(work), work / "same"
    procs = [subprocess.Popen([sys.executable, "-m", "vdnodes", "run", str(graph), "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(n)]
    reported = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=600)
        if p.returncode != 0:
            return f"a run failed: {stderr[-300:]}"
        reported += [line.split(": ", 1)[1] for line in stdout.splitlines() if line.startswith("files: ")]
    if len(set(reported)) != n:
        return f"{len(set(reported))} distinct paths reported for {n} runs"
    return only_complete_pngs(out, n)


def kill_during_save(work: Path) -> str | None:
    out = work / "killed"
    writer = ("import sys, os; sys.path.insert(0, %r)\n"
              "from vdnodes.core.fileio import write_new_file\n"
              "data = os.urandom(64 << 20)\n"
              "while True: write_new_file((f'%s/big_{i:05d}.bin' for i in range(10**9)), data)\n"
              % (str(ROOT), out))
    out.mkdir()
    for _ in range(40):  # kill until a temp file is left behind
        p = subprocess.Popen([sys.executable, "-c", writer])
        time.sleep(1.5)
        p.send_signal(signal.SIGKILL)
        p.wait()
        temps = [f for f in out.iterdir() if f.name.startswith(".")]
        if temps:
            break
    else:
        return "no kill landed during a write in 40 tries"
    for f in out.iterdir():
        if f.name.startswith("."):
            os.utime(f, (time.time() - 3600,) * 2)  # older than the writer's grace period
        else:
            f.unlink()
    p = vdnodes("run", str(hello(work)), "--out", str(out))
    if p.returncode != 0:
        return f"run failed: {p.stderr[-300:]}"
    if ".tmp" in p.stdout:
        return "a temp file was reported"
    return only_complete_pngs(out, 1)


def interrupt_a_run(work: Path) -> str | None:
    data = json.loads((ROOT / "graphs" / "text_to_image.json").read_text())
    data["nodes"]["sample"]["params"]["steps"] = 999
    graph = work / "long.json"
    graph.write_text(json.dumps(data))
    out = work / "interrupted"
    p = subprocess.Popen([sys.executable, "-m", "vdnodes", "run", str(graph), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    time.sleep(8)
    p.send_signal(signal.SIGINT)
    try:
        _, stderr = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        return "did not stop within 30 s of Ctrl+C"
    if p.returncode not in (1, 130) or "Traceback" in stderr:
        return f"exit {p.returncode}: {stderr[-300:]}"
    return only_complete_pngs(out, 0)


def full_disk(work: Path) -> str | None:
    mount = work / "tiny_disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        return "SKIP (needs root to mount a small tmpfs)"
    try:
        p = vdnodes("run", str(hello(work, **{"bigger.width": 1024, "bigger.height": 1024})), "--out", str(mount))
        if p.returncode == 0 or "internal error" in p.stderr or "Traceback" in p.stderr:
            return f"exit {p.returncode}: {p.stderr[-300:]}"
        left = list(mount.iterdir())
        return f"left {left}" if left else None
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def read_only_folder(work: Path) -> str | None:
    if os.geteuid() == 0:
        return "SKIP (root writes into read-only folders)"
    out = work / "ro"
    out.mkdir()
    out.chmod(0o555)
    p = vdnodes("run", str(hello(work)), "--out", str(out))
    return None if p.returncode in (1, 2) and "Traceback" not in p.stderr else f"exit {p.returncode}"


CASES: dict[str, Callable[[Path], str | None]] = {
    "20,000 x 20,000 image (decompression bomb)": lambda w: real_bomb(w, 20_000),
    "10,000 x 10,000 image": lambda w: real_bomb(w, 10_000),
    "16 concurrent runs into one folder": concurrent_runs,
    "SIGKILL during a save, then a run into the folder": kill_during_save,
    "Ctrl+C during a long run": interrupt_a_run,
    "full disk": full_disk,
    "read-only output folder": read_only_folder,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args(argv)
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        for i, (name, case) in enumerate(CASES.items()):
            work = base / f"case{i}"
            work.mkdir(parents=True, exist_ok=True)
            t0 = time.monotonic()
            try:
                problem = case(work)
            except Exception as e:  # noqa: BLE001 - a case that crashes is a failed case
                problem = f"{type(e).__name__}: {e}"
            status = "ok" if problem is None else ("skip" if problem.startswith("SKIP") else "FAIL")
            failed += status == "FAIL"
            print(f"{status:4} {time.monotonic() - t0:6.1f}s  {name}" + (f": {problem}" if problem else ""),
                  flush=True)
    print(f"{len(CASES) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
