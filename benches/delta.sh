#!/usr/bin/env bash
# cr-delta benchmark: a real process of MIB MiB (tests/workloads/rewrite.c)
# is checkpointed, rewrites one page in 20 (5%), and is checkpointed again;
# cr-delta --base / --apply on that pair are timed against cr-zstd on the
# same image and against plain reads of it, in the same run. Needs root.
#
#   benches/delta.sh              # MIB=1024 RUNS=3
#
# Prints a Markdown table: MiB/s are of the second (full) image; "x read"
# is the time against `cat IMAGE > /dev/null` (the page-cache read every
# filter pays); ratio is image size / output size.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${MIB:-1024}
RUNS=${RUNS:-3}
cargo build --release -q --bins
B=$PWD/target/release
T=$(mktemp -d /tmp/crdelta.XXXXXX)
pid=
cleanup() { [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
cc -O2 -o "$T/rewrite" tests/workloads/rewrite.c

. benches/timing.sh
wait_line() { # wait until FILE has a line matching RE
    for _ in $(seq 600); do grep -q "$2" "$1" && return 0; sleep 0.1; done
    echo "no line $2 in $1" >&2; exit 1
}

"$T/rewrite" -m "$MIB" -d 1000 > "$T/out" &
pid=$!
wait_line "$T/out" '^count 1 '
"$B/ckpt" -o "$T/a.img" "$pid"
kill -USR1 "$pid"
wait_line "$T/out" ' ok gen 1$'
"$B/ckpt" --kill -o "$T/b.img" "$pid"
wait "$pid" 2>/dev/null || true
pid=
"$B/cr-delta" -q --base "$T/a.img" -o "$T/d.img" "$T/b.img"
cat "$T/a.img" "$T/b.img" "$T/d.img" > /dev/null
n=$(stat -c %s "$T/b.img")

echo "## machine"
echo
echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores available"
echo "- kernel $(uname -r), $(rustc --version)"
echo "- images: a process of $MIB MiB, 5% of its pages rewritten between the two; best of $RUNS runs, files in page cache"
echo
read_ns=$(best "cat $T/b.img > /dev/null")
row() { # name command output-file-or-empty
    local ns out=""
    ns=$(best "$2")
    if [ -n "$3" ]; then out=$(ratio "$n" "$(stat -c %s "$3")"); fi
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$(secs "$ns")" "$(mibs "$n" "$ns")" "$(ratio "$ns" "$read_ns")" "$out"
}
echo "| command | seconds | MiB/s | x read | ratio |"
echo "| --- | ---: | ---: | ---: | ---: |"
printf '| %s | %s | %s | %s | %s |\n' "cat IMAGE > /dev/null" "$(secs "$read_ns")" "$(mibs "$n" "$read_ns")" "1.00" ""
row "cr-delta --base A B > D" "$B/cr-delta -q --base $T/a.img $T/b.img > $T/d2.img" "$T/d2.img"
row "cr-delta --apply A D > /dev/null" "$B/cr-delta -q --apply $T/a.img $T/d.img > /dev/null" ""
row "cr-zstd -l 1 -T 2 < B > Z" "$B/cr-zstd -q -l 1 -T 2 < $T/b.img > $T/z.img" "$T/z.img"
row "cr-zstd -T 1 < B > Z" "$B/cr-zstd -q -T 1 < $T/b.img > $T/z.img" "$T/z.img"
row "cr-zstd -d < Z > /dev/null" "$B/cr-zstd -q -d < $T/z.img > /dev/null" ""
