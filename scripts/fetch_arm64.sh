#!/usr/bin/env bash
# An arm64 base for the heterogeneous-fleet tests: Debian's static busybox for arm64, fetched from the
# machine's own Debian mirror with a private apt configuration (as scripts/fetch_engines.sh fetches sid),
# never `dpkg --add-architecture` on the machine: its dpkg and apt state are not touched.
#
#   bash scripts/fetch_arm64.sh          # -> .engines/arm64/busybox (an aarch64 ELF) and .engines/arm64/VERSION
#
# Idempotent; fails loudly, naming the step, when the archive cannot be reached.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.engines/arm64"
if [ -x "$DEST/busybox" ] && [ -f "$DEST/VERSION" ]; then
  exit 0
fi
fail() { echo "fetch_arm64: $*" >&2; exit 1; }
mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
[ -n "$mirror" ] || mirror="$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
[ -n "$mirror" ] || fail "cannot find the machine's Debian mirror in /etc/apt"
suite="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"/{state/lists/partial,cache/archives/partial,debs,root}
touch "$DEST.tmp/state/status"
echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main" > "$DEST.tmp/sources.list"
apt_private=(-o "Dir::Etc::SourceList=$DEST.tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State=$DEST.tmp/state" -o "Dir::Cache=$DEST.tmp/cache"
             -o "Dir::State::status=$DEST.tmp/state/status" -o Debug::NoLocking=1 -o APT::Sandbox::User=root
             -o APT::Architecture=arm64 -o APT::Architectures::=arm64)
apt-get "${apt_private[@]}" -qq update || fail "apt-get update of Debian $suite (arm64) from $mirror failed"
(cd "$DEST.tmp/debs" && apt-get "${apt_private[@]}" -qq download busybox-static:arm64) \
  || fail "downloading busybox-static for arm64 from Debian $suite failed"
deb="$(ls "$DEST.tmp"/debs/busybox-static_*_arm64.deb 2>/dev/null | head -1)"
[ -n "$deb" ] || fail "no busybox-static arm64 .deb was downloaded"
dpkg-deb -x "$deb" "$DEST.tmp/root" || fail "cannot unpack $deb"
bin="$DEST.tmp/root/bin/busybox"
[ -f "$bin" ] || fail "$deb holds no /bin/busybox"
# ELF class 64 (byte 4 = 2), little endian, e_machine 0xb7 (EM_AARCH64) at offset 18
machine="$(od -An -tx1 -j18 -N2 "$bin" | tr -d ' \n')"
[ "$machine" = "b700" ] || fail "$bin is not an aarch64 ELF (e_machine $machine)"
cp "$bin" "$DEST.tmp/busybox"
chmod 0755 "$DEST.tmp/busybox"
echo "busybox-static=$(dpkg-deb -f "$deb" Version) suite=$suite arch=arm64" > "$DEST.tmp/VERSION"
rm -rf "$DEST.tmp/debs" "$DEST.tmp/cache" "$DEST.tmp/state" "$DEST.tmp/root" "$DEST.tmp/sources.list" "$DEST"
mv "$DEST.tmp" "$DEST"
echo "fetch_arm64: $(cat "$DEST/VERSION") into $DEST/busybox"
