#!/usr/bin/env bash
# Downtime of a `cr-migrate` migration, plain (ckpt --stop) or with
# pre-copy (LIVE=1: cr-migrate --live, i.e. ckpt --live), as issue 13
# states it: a process with MIB MiB of private memory (random contents)
# rewrites 16 MiB of random pages per second and logs a timestamp every
# 10 ms; it is moved to a second host (own network, pid and mount
# namespaces, a real sshd on 10.77.251.2, as tests/host builds it) and
# the largest gap in its own log is its downtime as it sees it.
#
#   benches/migrate.sh [MIB=1024] [LEVEL=3] [LIVE=0|1] [PROFILE=0|1]   (as root; release build)
#
# Prints the cr-migrate report and the largest gap; PROFILE=1 also the
# destination cr-restart's phases (CRTOOLS_PROFILE). Extra environment
# for the destination's cr-restart (e.g. CRTOOLS_NO_KEEP=1) goes in
# DEST_ENV. Everything it makes
# (namespaces, veth pair, keys, files) is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=1024
LEVEL=3
LIVE=0
PROFILE=0
for a in "$@"; do
    case "$a" in MIB=*|LEVEL=*|LIVE=*|PROFILE=*) declare "${a%%=*}=${a#*=}" ;; *) echo "usage: $0 [MIB=N] [LEVEL=N] [LIVE=0|1] [PROFILE=0|1]" >&2; exit 2 ;; esac
done
live=()
[ "$LIVE" = 1 ] && live=(--live -v)
dest_env=${DEST_ENV:-}
[ "$PROFILE" = 1 ] && dest_env="$dest_env CRTOOLS_PROFILE=1"
restart=(--cr-restart "env $dest_env cr-restart")
cargo build --release --bins --quiet
B=$PWD/target/release
work=$(mktemp -d /tmp/crtools-bench-migrate.XXXXXX)
init= pid= sshd=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    [ -n "$init" ] && kill -9 "$init" 2>/dev/null || true
    ip link del crbench251a 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/dirty.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
static uint64_t x = 88172645463325252ULL;
static inline uint64_t rnd(void) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; return x; }
int main(int argc, char **argv) {
    size_t mib = strtoul(argv[1], 0, 10), pages = mib * 256;
    uint64_t *m = mmap(0, mib << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return 1;
    for (size_t i = 0; i < (mib << 20) / 8; i++) m[i] = rnd();
    FILE *log = fopen(argv[2], "a");
    setvbuf(log, 0, _IOLBF, 0);
    puts("ready"); fflush(stdout);
    for (;;) {
        /* 16 MiB/s: 40 random pages every 10 ms */
        for (int k = 0; k < 40; k++) {
            uint64_t *p = m + (rnd() % pages) * 512;
            for (int i = 0; i < 512; i++) p[i] = rnd();
        }
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        fprintf(log, "%lld.%09ld\n", (long long)t.tv_sec, t.tv_nsec);
        usleep(10000);
    }
}
EOF
cc -O2 -o "$work/dirty" "$work/dirty.c"

# The second host.
ssh-keygen -q -t ed25519 -N '' -f "$work/hk"
ssh-keygen -q -t ed25519 -N '' -f "$work/ck"
cp "$work/ck.pub" "$work/ak"
cat > "$work/sshd_config" <<EOF
ListenAddress 10.77.251.2
HostKey $work/hk
AuthorizedKeysFile $work/ak
PidFile none
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
SetEnv PATH=$B:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin
EOF
cat > "$work/ssh_config" <<EOF
Host *
  IdentityFile $work/ck
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  GlobalKnownHostsFile /dev/null
  BatchMode yes
  LogLevel ERROR
EOF
unshare --net --pid --mount --uts --ipc --fork --mount-proc --kill-child -- sh -c \
    'mount -t tmpfs crtools-run /run && mkdir /run/sshd && exec python3 -c "
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
while True:
    while True:
        try:
            p, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if p == 0:
            break
    signal.sigwait([signal.SIGCHLD])
"' 2>"$work/unshare.log" &
us=$!
for _ in $(seq 100); do init=$(cat /proc/$us/task/$us/children 2>/dev/null | tr -d " " || true); [ -n "$init" ] && break; sleep 0.05; done
ip link add crbench251a type veth peer name crbench251b
ip link set crbench251b netns "$init"
ip addr add 10.77.251.1/24 dev crbench251a
ip link set crbench251a up
nsenter -t "$init" -n sh -c 'ip addr add 10.77.251.2/24 dev crbench251b && ip link set crbench251b up && ip link set lo up'
nsenter -t "$init" -n -m -p -u -i /usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
for _ in $(seq 200); do ssh -F "$work/ssh_config" root@10.77.251.2 true 2>/dev/null && break; sleep 0.05; done

# The workload: wait until its memory is written and it logs.
"$work/dirty" "$MIB" "$work/log" > "$work/out" &
pid=$!
while ! grep -q ready "$work/out" 2>/dev/null; do sleep 0.1; done
sleep 2
"$B/cr-migrate" -F "$work/ssh_config" --level "$LEVEL" "${live[@]}" "${restart[@]}" "$pid" root@10.77.251.2 2>&1 | tee "$work/report"
wait "$pid" 2>/dev/null || true
pid=
sleep 2
echo "largest gap in the program's own log (ms), and lines logged:"
awk 'NR > 1 { g = ($1 - p) * 1000; if (g > max) max = g } { p = $1 } END { printf "%.1f ms, %d lines\n", max, NR }' "$work/log"
