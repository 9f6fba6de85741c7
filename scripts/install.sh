#!/usr/bin/env bash
# Installs crtools' programs, man pages and bash/zsh/fish completions.
#
#   scripts/install.sh [PREFIX=/usr/local] [DESTDIR=] [BINDIR=..] [MANDIR=..]
#   scripts/install.sh uninstall [PREFIX=...] [DESTDIR=...]
#   scripts/install.sh deb                 # target/debian/crtools_*.deb (with dpkg-deb)
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
        # A Debian package made with dpkg-deb alone (no cargo-deb to build first):
        # the same files as `install PREFIX=/usr`, man pages gzipped, zsh
        # completions where Debian's zsh reads them.
        command -v dpkg-deb >/dev/null 2>&1 || {
            echo "install.sh: deb: dpkg-deb is not installed (a Debian system's dpkg)" >&2
            exit 1
        }
        build
        version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
        arch=$(dpkg --print-architecture)
        root=$(mktemp -d)
        trap 'rm -rf "$root"' EXIT
        chmod 0755 "$root"
        install -d "$root/DEBIAN" "$root/usr/bin" "$root/usr/share/man/man1" \
            "$root/usr/share/man/man5" "$root/usr/share/doc/crtools"
        for p in "${PROGRAMS[@]}"; do
            install -m 0755 "$target/$p" "$root/usr/bin/$p"
        done
        # As Debian packages ship them: without symbols.
        if command -v strip >/dev/null 2>&1; then strip --strip-unneeded "$root"/usr/bin/*; fi
        install -m 0644 man/*.1 "$root/usr/share/man/man1/"
        install -m 0644 man/*.5 "$root/usr/share/man/man5/"
        gzip -9n "$root"/usr/share/man/man1/*.1 "$root"/usr/share/man/man5/*.5
        install -m 0644 README.md "$root/usr/share/doc/crtools/README.md"
        write_completions "$root/usr/share" zsh/vendor-completions
        # The highest glibc symbol version the programs use is the libc6 they need.
        glibc=$(objdump -T "$root"/usr/bin/* 2>/dev/null |
            sed -n 's/.*GLIBC_\([0-9][0-9.]*\).*/\1/p' | sort -uV | tail -n 1)
        cat >"$root/DEBIAN/control" <<EOF
Package: crtools
Version: $version-1
Architecture: $arch
Maintainer: crtools developers <crtools@localhost>
Installed-Size: $(du -sk --exclude=DEBIAN "$root" | cut -f1)
Depends: libc6 (>= ${glibc:-2.34}), libgcc-s1
Section: admin
Priority: optional
Description: Checkpoint/restart of Linux process trees as Unix pipes
 ckpt writes a running Linux process tree to a stream and cr-restart turns the
 stream back into the running tree with its original pids, here or on another
 machine. cr-zstd, cr-sum, cr-split and cr-info compress, checksum, split and
 describe images in a pipe; cr-delta stores an image as a delta against an
 earlier one; cr-migrate moves a running tree to another host over ssh.
EOF
        mkdir -p "${CARGO_TARGET_DIR:-target}/debian"
        deb=${CARGO_TARGET_DIR:-target}/debian/crtools_${version}-1_${arch}.deb
        dpkg-deb --root-owner-group -Zxz --build "$root" "$deb.tmp" >/dev/null
        mv "$deb.tmp" "$deb"
        echo "$deb"
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
