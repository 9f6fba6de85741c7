# Timing helpers sourced by the benchmark scripts (RUNS must be set).
now() { date +%s%N; }
# best nanoseconds of RUNS runs of a shell command
best() {
    local best=0 s e d
    for _ in $(seq "$RUNS"); do
        s=$(now); bash -c "$1"; e=$(now)
        d=$((e - s))
        if [ "$best" = 0 ] || [ "$d" -lt "$best" ]; then best=$d; fi
    done
    echo "$best"
}
mibs() { awk -v b="$1" -v ns="$2" 'BEGIN { printf "%.0f", b / 1048576 / (ns / 1e9) }'; }
secs() { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e9 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
