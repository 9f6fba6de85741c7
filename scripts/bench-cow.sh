#!/bin/bash
# bench-cow.sh BINDIR LABEL: checkpoint (ckpt --kill -o FILE) and restore
# (cr-restart --detach FILE) of tests/workloads/cowtree.c, a parent with
# 100 MiB filled before it forked 8 children (issue 14), built first with
#   gcc -O2 -o /tmp/cowtree tests/workloads/cowtree.c
# Prints per run: times, image size, restored processes and summed Pss.
# Run as root (page frame numbers). Kills the cowtree processes it made.
B=$1
for run in 1 2; do
  setsid /tmp/cowtree -m 100 -c 8 -d 100 > /dev/null 2>&1 &
  sleep 2
  P=$(pgrep -o -x cowtree)
  s=$(date +%s.%N); $B/ckpt --kill -o /tmp/bench.img $P; e=$(date +%s.%N)
  sz=$(stat -c %s /tmp/bench.img)
  sleep 0.5
  s2=$(date +%s.%N); $B/cr-restart --detach /tmp/bench.img; e2=$(date +%s.%N)
  sleep 1
  tot=0; n=0
  for p in $(pgrep -x cowtree); do pss=$(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup); tot=$((tot+pss)); n=$((n+1)); done
  printf "%s run %d: ckpt %.2f s, image %d MiB, restore %.2f s, %d processes, Pss %d MiB\n" "$2" $run $(echo "$e - $s" | bc) $((sz>>20)) $(echo "$e2 - $s2" | bc) $n $((tot>>10))
  for p in $(pgrep -x cowtree); do kill -9 $p; done
  sleep 0.5
  rm -f /tmp/bench.img
done
