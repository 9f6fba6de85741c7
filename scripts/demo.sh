#!/usr/bin/env bash
# Demonstration: checkpoint a live process through a pipe, kill it, restore
# it, and show it continuing where it was. Run as root (ptrace, clone3 with
# set_tid). Builds the tools first.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "demo: run as root (checkpoint/restore needs ptrace and clone3 with set_tid)" >&2
    exit 1
fi
echo "== building"
cargo build --release --bins --quiet
B=$PWD/target/release

work=$(mktemp -d)
pid=""
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    [ -f "$work/pid" ] && kill -9 "$(cat "$work/pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A program nobody here wrote: python3 counting, with state in memory.
python3 -u -c '
import time
i, total = 0, 0
while True:
    total += i
    print(f"count {i} sum {total}", flush=True)
    i += 1
    time.sleep(0.2)
' > "$work/log" 2>&1 &
pid=$!
disown "$pid"
sleep 2
echo "== original (pid $pid) is counting:"
tail -n 3 "$work/log"

echo "== ckpt --kill $pid | cr-zstd | cr-sum > image"
"$B/ckpt" --kill "$pid" | "$B/cr-zstd" | "$B/cr-sum" > "$work/app.img"
while [ -e "/proc/$pid" ]; do sleep 0.1; done
last=$(tail -n 1 "$work/log")
echo "   the original is gone; its last line: $last"
"$B/cr-sum" --check < "$work/app.img" && echo "   image verified"
"$B/cr-info" < "$work/app.img" | sed 's/^/   /'

echo "== cr-restart < image (original pid $pid)"
"$B/cr-restart" --detach --pidfile "$work/pid" < "$work/app.img"
echo "   restored as pid $(cat "$work/pid")"
sleep 2
echo "== the restored process carries on:"
grep -A 4 -F -x "$last" "$work/log"

# Check: one unbroken sequence of counts.
awk '{ if ($2 != NR - 1) { print "demo: gap or repeat at line " NR ": " $0; exit 1 } }' "$work/log"
echo "== ok: $(wc -l < "$work/log") consecutive counts across the checkpoint"
