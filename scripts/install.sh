#!/usr/bin/env bash
# Installs crtools' programs, man pages and bash/zsh/fish completions.
#
#   scripts/install.sh [PREFIX=/usr/local] [DESTDIR=] [BINDIR=..] [MANDIR=..]
#   scripts/install.sh uninstall [PREFIX=...] [DESTDIR=...]
#   scripts/install.sh deb                 # target/debian/crtools_*.deb (needs cargo-deb)
#
# Builds the release programs with cargo first (into CARGO_TARGET_DIR or target/;
# nothing is rebuilt when up to date); the test workloads are not built. Run as
# root for a system-wide PREFIX.
set -euo pipefail
cd "$(dirname "$0")/.."

PROGRAMS=(ckpt cr-restart cr-zstd cr-sum cr-split cr-info cr-migrate cr-delta)
action=install
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
BINDIR=${BINDIR:-}
MANDIR=${MANDIR:-}
DATADIR=${DATADIR:-}
for arg in "$@"; do
    case "$arg" in
        PREFIX=*|DESTDIR=*|BINDIR=*|MANDIR=*|DATADIR=*) declare "${arg%%=*}=${arg#*=}" ;;
        install|uninstall|deb) action=$arg ;;
        -h|--help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
        *) echo "install.sh: $arg: unknown argument (see --help)" >&2; exit 2 ;;
    esac
done
BINDIR=${BINDIR:-$PREFIX/bin}
DATADIR=${DATADIR:-$PREFIX/share}
MANDIR=${MANDIR:-$DATADIR/man}
target=${CARGO_TARGET_DIR:-target}/release

# completion file paths, relative to a share/ directory, for program $1
bash_path() { echo "bash-completion/completions/$1"; }
zsh_path() { echo "zsh/site-functions/_$1"; }
fish_path() { echo "fish/vendor_completions.d/$1.fish"; }

build() {
    cargo build --release --locked --bins --quiet
}

# write_completions OUTDIR ZSHSUBDIR: OUTDIR/{bash-completion,...} from the built programs
write_completions() {
    local out=$1 zsh_dir=$2 p
    mkdir -p "$out/bash-completion/completions" "$out/$zsh_dir" "$out/fish/vendor_completions.d"
    for p in "${PROGRAMS[@]}"; do
        "$target/$p" --completions bash >"$out/$(bash_path "$p")"
        "$target/$p" --completions zsh >"$out/$zsh_dir/_$p"
        "$target/$p" --completions fish >"$out/$(fish_path "$p")"
    done
}

case "$action" in
    deb)
        command -v cargo-deb >/dev/null 2>&1 || {
            echo "install.sh: deb: cargo-deb is not installed (cargo install cargo-deb --locked)" >&2
            exit 1
        }
        build
        # The package's assets (Cargo.toml) take the completions from here; Debian's
        # zsh reads vendor-completions.
        rm -rf "$target/completions"
        write_completions "$target/completions" zsh/vendor-completions
        cargo deb --no-build
        ;;
    install)
        build
        install -d "$DESTDIR$BINDIR" "$DESTDIR$MANDIR/man1" "$DESTDIR$MANDIR/man5"
        for p in "${PROGRAMS[@]}"; do
            install -m 0755 "$target/$p" "$DESTDIR$BINDIR/$p"
        done
        install -m 0644 man/*.1 "$DESTDIR$MANDIR/man1/"
        install -m 0644 man/*.5 "$DESTDIR$MANDIR/man5/"
        write_completions "$DESTDIR$DATADIR" zsh/site-functions
        echo "installed ${PROGRAMS[*]} into $DESTDIR$BINDIR, man pages into $DESTDIR$MANDIR"
        ;;
    uninstall)
        for p in "${PROGRAMS[@]}"; do
            rm -f "$DESTDIR$BINDIR/$p" "$DESTDIR$MANDIR/man1/$p.1" \
                "$DESTDIR$DATADIR/$(bash_path "$p")" "$DESTDIR$DATADIR/$(zsh_path "$p")" \
                "$DESTDIR$DATADIR/$(fish_path "$p")"
        done
        rm -f "$DESTDIR$MANDIR/man5/cr-image.5"
        echo "removed ${PROGRAMS[*]} from $DESTDIR$BINDIR"
        ;;
esac
