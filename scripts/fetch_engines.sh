#!/usr/bin/env bash
# Fetch a newer Docker Engine and containerd than the machine's own, from Debian's
# archive, into a private root, without touching the system (no dpkg -i, no apt state).
#
#   bash scripts/fetch_engines.sh [SUITE]     # default: sid (Docker 28.x + containerd 2.x)
#
# Unpacks docker.io, containerd, tini and docker-buildx into .engines/SUITE/root and
# writes .engines/SUITE/VERSION. Their runc needs a newer glibc than Debian 12's, so it
# is deleted: the harness runs containers with the machine's /usr/sbin/runc.
# Idempotent; fails loudly (naming the step) when the archive cannot be reached.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SUITE="${1:-sid}"
DEST="$ROOT/.engines/$SUITE"
if [ -x "$DEST/root/usr/sbin/dockerd" ] && [ -f "$DEST/VERSION" ]; then
  exit 0
fi
fail() { echo "fetch_engines: $*" >&2; exit 1; }
mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
[ -n "$mirror" ] || mirror="$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
[ -n "$mirror" ] || fail "cannot find the machine's Debian mirror in /etc/apt"
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"/{state/lists/partial,cache/archives/partial,debs,root}
touch "$DEST.tmp/state/status"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SUITE main" > "$DEST.tmp/sources.list"
apt_private=(-o "Dir::Etc::SourceList=$DEST.tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State=$DEST.tmp/state" -o "Dir::Cache=$DEST.tmp/cache"
             -o "Dir::State::status=$DEST.tmp/state/status" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
apt-get "${apt_private[@]}" -qq update || fail "apt-get update of Debian $SUITE from $mirror failed"
(cd "$DEST.tmp/debs" && apt-get "${apt_private[@]}" -qq download docker.io containerd tini docker-buildx) \
  || fail "downloading docker.io, containerd, tini, docker-buildx from Debian $SUITE failed"
for deb in "$DEST.tmp"/debs/*.deb; do
  dpkg-deb -x "$deb" "$DEST.tmp/root" || fail "cannot unpack $deb"
done
rm -f "$DEST.tmp/root/usr/sbin/runc" "$DEST.tmp/root/usr/bin/runc"
"$DEST.tmp/root/usr/sbin/dockerd" --version >/dev/null 2>&1 \
  || fail "the fetched dockerd does not run on this machine: $("$DEST.tmp/root/usr/sbin/dockerd" --version 2>&1 | head -3)"
{
  echo "docker=$("$DEST.tmp/root/usr/sbin/dockerd" --version | sed 's/^Docker version \([^,]*\).*/\1/')"
  echo "containerd=$("$DEST.tmp/root/usr/bin/containerd" --version | awk '{print $3}')"
} > "$DEST.tmp/VERSION"
rm -rf "$DEST.tmp/debs" "$DEST.tmp/cache" "$DEST"
mv "$DEST.tmp" "$DEST"
echo "fetch_engines: Debian $SUITE: $(tr '\n' ' ' < "$DEST/VERSION")into $DEST/root"
