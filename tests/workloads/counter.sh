#!/bin/bash
# counter.sh [DELAY_MS]: prints "count N" for N = 1, 2, ..., running external
# commands every iteration (/bin/true, expr, sleep) and checking their results.
delay_ms=${1:-50}
delay=$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))
n=0
while :; do
    n=$((n + 1))
    /bin/true || { echo "FAIL /bin/true failed at count $n"; exit 1; }
    doubled=$(expr "$n" \* 2)
    if [ "$doubled" != $((n * 2)) ]; then
        echo "FAIL expr gave $doubled at count $n"
        exit 1
    fi
    echo "count $n"
    sleep "$delay"
done
