#!/usr/bin/env bash
# QEMU user emulation for arm64, so that an amd64 machine can build linux/arm64 images (RUN steps run
# under qemu-aarch64) and run them: Debian's qemu-user-static, and the aarch64 binfmt_misc handler
# registered from Debian's own file when it is missing. No systemd runs here, so nothing else registers
# it. Debian's file has flags POF: F opens the interpreter now, so every engine's containers find it
# without a bind mount. The handler is kernel-wide and lasts until reboot. Run as root; idempotent;
# fails clearly (saying why and what to do) when it cannot.
set -euo pipefail
fail() { echo "setup_qemu: $*" >&2; exit 1; }
BINFMT=/proc/sys/fs/binfmt_misc
CONF=/usr/lib/binfmt.d/qemu-aarch64.conf
if [ ! -x /usr/bin/qemu-aarch64-static ] || [ ! -f "$CONF" ]; then
  echo "setup_qemu: installing qemu-user-static"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || fail "apt-get update failed: cannot install qemu-user-static"
  apt-get install -y -qq qemu-user-static >/dev/null || fail "apt-get install qemu-user-static failed"
fi
[ -f "$CONF" ] || fail "$CONF is missing after installing qemu-user-static"
if ! mountpoint -q "$BINFMT"; then
  mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null \
    || fail "cannot mount binfmt_misc at $BINFMT (needs root and a kernel with CONFIG_BINFMT_MISC; in a container, --privileged)"
fi
if [ ! -e "$BINFMT/qemu-aarch64" ]; then
  cat "$CONF" > "$BINFMT/register" 2>/dev/null \
    || fail "cannot register the aarch64 handler through $BINFMT/register (needs root on the host kernel)"
fi
grep -qx enabled "$BINFMT/qemu-aarch64" || fail "the aarch64 binfmt handler is registered but disabled ($BINFMT/qemu-aarch64)"
