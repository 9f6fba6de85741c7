#!/usr/bin/env bash
# Filters benchmark: cr-zstd, cr-sum and cr-zstd -d against zstd(1) and
# sha256sum(1) on the same image files, in the same run.
#
#   benches/filters.sh            # 1 GiB of random and 1 GiB of zero pages
#   SIZE=256M benches/filters.sh  # smaller
#   RUNS=3                        # best of RUNS for each command (default 3)
#
# Images come from the synthetic generator (examples/synth.rs). Temp files
# live in one directory under /tmp, removed on exit. Prints a Markdown
# table: MiB/s are of the uncompressed image, ratio is image / output.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-1G}
RUNS=${RUNS:-3}
cargo build --release -q --bins --example synth
B=$PWD/target/release
T=$(mktemp -d /tmp/crbench.XXXXXX)
trap 'rm -rf "$T"' EXIT

. benches/timing.sh

echo "## machine"
echo
echo "- CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores available"
echo "- kernel $(uname -r), $(rustc --version), $(zstd --version | head -1), $(sha256sum --version | head -1)"
echo "- image data: $SIZE of pages per image, best of $RUNS runs, files in page cache"
echo

row() { # name command size-of-input output-file-or-empty
    local ns out=""
    ns=$(best "$2")
    if [ -n "$4" ]; then out=$(ratio "$3" "$(stat -c %s "$4")"); fi
    printf '| %s | %s | %s | %s | %s |\n' "$1" "$5" "$(secs "$ns")" "$(mibs "$3" "$ns")" "$out"
}

echo "| command | image | seconds | MiB/s | ratio |"
echo "| --- | --- | ---: | ---: | ---: |"
for fill in random zero; do
    img=$T/$fill.img
    "$B/examples/synth" --fill "$fill" --size "$SIZE" > "$img"
    cat "$img" > /dev/null
    n=$(stat -c %s "$img")
    row "cr-zstd -l 1 -T 2" "$B/cr-zstd -q -l 1 -T 2 < $img > $T/c.crz" "$n" "$T/c.crz" "$fill"
    row "zstd -1 -T2" "zstd -q -1 -T2 -c < $img > $T/c.zst" "$n" "$T/c.zst" "$fill"
    row "cr-zstd -d" "$B/cr-zstd -q -d < $T/c.crz > /dev/null" "$n" "" "$fill"
    row "cr-zstd -d -T 2" "$B/cr-zstd -q -d -T 2 < $T/c.crz > /dev/null" "$n" "" "$fill"
    row "zstd -d" "zstd -q -d -c < $T/c.zst > /dev/null" "$n" "" "$fill"
    row "cr-sum (-T 2)" "$B/cr-sum -q -T 2 < $img > /dev/null" "$n" "" "$fill"
    row "cr-sum -T 1" "$B/cr-sum -q -T 1 < $img > /dev/null" "$n" "" "$fill"
    "$B/cr-sum" -q < "$img" > "$T/s.img"
    row "cr-sum --check (-T 2)" "$B/cr-sum -q -T 2 --check < $T/s.img" "$n" "" "$fill"
    row "sha256sum" "sha256sum < $img > /dev/null" "$n" "" "$fill"
    rm -f "$img" "$T"/c.* "$T"/s.img
done
