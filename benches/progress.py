#!/usr/bin/env python3
"""Cost of the progress counters and display: the same commands with two
builds of the programs, interleaved, best of RUNS each (in turn first), with peak RSS.

    benches/progress.py BEFORE_BIN_DIR AFTER_BIN_DIR [SIZE_MIB]

BEFORE is a build without the progress module (e.g. the commit before it),
AFTER one with it. The image (SIZE_MIB MiB of random pages, default 1024)
comes from AFTER's examples/synth; the ckpt rows checkpoint a python3
process holding SIZE_MIB MiB of random bytes, to /dev/null. Rows marked
"--progress" force the progress line (to /dev/null) in AFTER, to show what
drawing it costs. Prints a Markdown table.
"""

import os
import subprocess
import sys
import tempfile
import time

RUNS = int(os.environ.get("RUNS", "5"))


def run(cmd, tmp):
    """Wall seconds and peak RSS (KiB) of one shell command. The RSS comes
    from GNU time, not from wait4 here: a child's peak starts from the
    high-water mark of the process that forked it (this script)."""
    t0 = time.monotonic()
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", f"{tmp}/rss", "bash", "-c", cmd],
                   check=True)
    dt = time.monotonic() - t0
    with open(f"{tmp}/rss") as f:
        return dt, int(f.read().split()[-1])


def main():
    before, after = sys.argv[1], sys.argv[2]
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 1024
    tmp = tempfile.mkdtemp(prefix="crprog.")
    img = f"{tmp}/a.img"
    synth = os.path.join(after, "examples", "synth")
    subprocess.run(f"{synth} --fill random --size {size}M > {img}", shell=True, check=True)
    subprocess.run(f"cat {img} > /dev/null", shell=True, check=True)
    holder = subprocess.Popen(
        ["python3", "-c",
         f"import os,sys,time\nb=os.urandom({size}<<20)\nprint('ready',flush=True)\ntime.sleep(3600)"],
        stdout=subprocess.PIPE)
    holder.stdout.readline()
    pid = holder.pid
    rows = [
        ("cr-zstd -l 1 -T 2 < img > file", "{b}/cr-zstd -l 1 -T 2 < {img} > {tmp}/o", ""),
        ("cr-sum < img > /dev/null", "{b}/cr-sum < {img} > /dev/null", ""),
        ("cr-sum --check < summed", "{b}/cr-sum --check < {tmp}/s > /dev/null", ""),
        ("ckpt PID > /dev/null", "{b}/ckpt {pid} > /dev/null", ""),
        ("cr-zstd ... --progress", "{b}/cr-zstd -l 1 -T 2 --progress < {img} > {tmp}/o 2>/dev/null", "after"),
        ("ckpt PID --progress", "{b}/ckpt --progress {pid} > /dev/null 2>/dev/null", "after"),
    ]
    subprocess.run(f"{after}/cr-sum < {img} > {tmp}/s", shell=True, check=True)
    print(f"- {size} MiB image of random pages; best of {RUNS} runs, interleaved, each first in turn; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print()
    print("| command | before s | after s | before peak RSS | after peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: |")
    try:
        for name, cmd, only in rows:
            best = {}
            for i in range(RUNS):
                pair = [("before", before), ("after", after)]
                for tag, b in pair if i % 2 == 0 else pair[::-1]:
                    if only and tag != only:
                        continue
                    dt, rss = run(cmd.format(b=b, img=img, tmp=tmp, pid=pid), tmp)
                    t, r = best.get(tag, (1e9, 0))
                    best[tag] = (min(t, dt), max(r, rss))
            cell = lambda tag, i: (f"{best[tag][0]:.3f}" if i == 0 else f"{best[tag][1] / 1024:.1f} MiB") if tag in best else "-"
            print(f"| {name} | {cell('before', 0)} | {cell('after', 0)} | {cell('before', 1)} | {cell('after', 1)} |")
    finally:
        holder.kill()
        holder.wait()
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()
