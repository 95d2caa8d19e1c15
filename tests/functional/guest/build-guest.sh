#!/bin/bash
# Build the guest for vdm's functional tests: Debian's Linux 6.1 kernel (from the
# linux-image .deb, unpacked with dpkg -x) and a small initramfs with busybox-static,
# the virtio/virtio_pci/virtio_blk/virtio_net/virtio_scsi/sd_mod modules (and their dependencies) and
# guest/init.
#
#   tests/functional/guest/build-guest.sh OUTDIR [STAMPFILE]
#
# OUTDIR "-" means ${VDM_GUEST_DIR:-/var/tmp/vdm-guest} (the default of
# boot-vhost-user-blk.py). STAMPFILE, if given, is touched on success (meson).
# Leaves OUTDIR/vmlinuz (bzImage), OUTDIR/vmlinux (its ELF payload, booted via PVH
# when the kernel has CONFIG_PVH; the default of boot-vhost-user-blk.py),
# OUTDIR/initramfs.gz and OUTDIR/guest.env (KPKG, KVER, STAMP).
# Installs missing Debian packages itself (qemu-system-x86, qemu-system-common,
# busybox-static, kmod, cpio; iproute2 and iputils-ping for the net test). Cached:
# a second run with the same kernel and the same init script does nothing. Safe to
# run concurrently (flock on OUTDIR/.lock).
set -euo pipefail

OUT=${1:?usage: build-guest.sh OUTDIR [STAMPFILE]}
STAMPFILE=${2:-}
[ "$OUT" != - ] || OUT=${VDM_GUEST_DIR:-/var/tmp/vdm-guest}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

log() { echo "build-guest: $*" >&2; }

APT_OPTS=(-o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 -o APT::Sandbox::User=root)
apt_updated=0
apt_update_once() {
    if [ "$apt_updated" = 0 ]; then
        log "apt-get update"
        apt-get "${APT_OPTS[@]}" update -qq >&2
        apt_updated=1
    fi
}

# Host tools: the VMM, qemu-storage-daemon (peer backend), busybox, kmod, cpio, xz.
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
command -v qemu-storage-daemon >/dev/null || need_pkgs+=(qemu-system-common)
[ -e /usr/share/qemu/qboot.rom ] || need_pkgs+=(qemu-system-data)
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
    || need_pkgs+=(busybox-static)
command -v depmod >/dev/null || [ -x /sbin/depmod ] || need_pkgs+=(kmod)
command -v cpio >/dev/null || need_pkgs+=(cpio)
command -v python3 >/dev/null || need_pkgs+=(python3)
command -v xz >/dev/null || need_pkgs+=(xz-utils)
command -v flock >/dev/null || need_pkgs+=(util-linux)
# The net test (boot-vhost-user-net.py): ip netns, ping from the namespace.
command -v ip >/dev/null || [ -x /sbin/ip ] || need_pkgs+=(iproute2)
command -v ping >/dev/null || [ -x /bin/ping ] || need_pkgs+=(iputils-ping)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    apt_update_once
    log "apt-get install ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get "${APT_OPTS[@]}" install -y -qq \
        --no-install-recommends "${need_pkgs[@]}" >&2
fi
export PATH=$PATH:/sbin:/usr/sbin

exec 9>"$OUT/.lock"
flock -w 900 9 || { log "cannot lock $OUT/.lock"; exit 1; }

# Which kernel: linux-image-amd64 depends on linux-image-<KVER>. Use the one
# already unpacked when there is no package list to ask (offline re-runs).
kpkg=""
if [ -z "${VDM_GUEST_KPKG:-}" ]; then
    kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null \
           | awk '/Depends: linux-image-[0-9]/ {print $2; exit}') || true
    if [ -z "$kpkg" ] && [ -f "$OUT/guest.env" ]; then
        kpkg=$(sed -n 's/^KPKG=//p' "$OUT/guest.env")
    fi
    if [ -z "$kpkg" ]; then
        apt_update_once
        kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    fi
else
    kpkg=$VDM_GUEST_KPKG
fi
[ -n "$kpkg" ] || { log "cannot resolve linux-image-amd64"; exit 1; }
kver=${kpkg#linux-image-}
KROOT=$OUT/kernel-$kver

if [ ! -f "$KROOT/.unpacked" ]; then
    deb=$(ls "$OUT"/debs/"$kpkg"_*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
        cached=$(ls /var/cache/apt/archives/"$kpkg"_*_amd64.deb 2>/dev/null | head -n1 || true)
        mkdir -p "$OUT/debs"
        if [ -n "$cached" ]; then
            cp "$cached" "$OUT/debs/"
        else
            log "apt-get download $kpkg"
            if ! (cd "$OUT/debs" && apt-get "${APT_OPTS[@]}" download "$kpkg" >&2); then
                apt_update_once
                (cd "$OUT/debs" && apt-get "${APT_OPTS[@]}" download "$kpkg" >&2)
            fi
        fi
        deb=$(ls "$OUT"/debs/"$kpkg"_*.deb | head -n1)
    fi
    log "unpacking $(basename "$deb")"
    rm -rf "$KROOT"
    mkdir -p "$KROOT"
    dpkg -x "$deb" "$KROOT"
    touch "$KROOT/.unpacked"
fi

# Modules the guest needs, with their dependencies, in load order.
# virtio_scsi + sd_mod (scsi_mod, scsi_common, crc-t10dif come as dependencies) for the
# vhost-user-scsi test; the generic CRC algorithms so that crc-t10dif and crc64-rocksoft find
# theirs without modprobe (the PCLMUL variant is a soft dependency and refuses to load under TCG).
MODS=(virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio_net
      virtio_scsi crct10dif_generic crc64_rocksoft_generic sd_mod)
modtree=$KROOT/lib/modules/$kver
[ -d "$modtree" ] || { log "no $modtree"; exit 1; }
[ -f "$modtree/modules.dep" ] && [ "$modtree/modules.dep" -nt "$KROOT/.unpacked" ] \
    || depmod -b "$KROOT" "$kver"

stamp_src=$( { cat "$HERE/init" "$0"; echo "$kpkg ${MODS[*]}"; } | md5sum | cut -d' ' -f1)
if [ -f "$OUT/initramfs.gz" ] && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/guest.env" ] \
   && grep -qx "STAMP=$stamp_src" "$OUT/guest.env"; then
    log "cached: $OUT (kernel $kver)"
    [ -z "$STAMPFILE" ] || touch "$STAMPFILE"
    exit 0
fi

log "building initramfs for $kver"
STAGE=$(mktemp -d "$OUT/stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,sbin,proc,sys,dev,tmp,mnt,lib/modules/"$kver"}
cp /bin/busybox "$STAGE/bin/busybox"
cp "$HERE/init" "$STAGE/init"
chmod 755 "$STAGE/init" "$STAGE/bin/busybox"

: > "$STAGE/lib/modules/load-order"
declare -A seen=()
for m in "${MODS[@]}"; do
    # --show-depends prints "insmod /path/x.ko" lines, dependencies first;
    # "builtin x" for built-in ones. Unknown modules are an error unless optional.
    if ! deps=$(modprobe -d "$KROOT" -S "$kver" --show-depends "$m" 2>/dev/null); then
        case $m in virtio_pci_legacy_dev|virtio_pci_modern_dev|crct10dif_generic|crc64_rocksoft_generic) continue;; esac
        log "module $m not found in $kver"; exit 1
    fi
    while read -r kind path _; do
        [ "$kind" = insmod ] || continue
        [ -z "${seen[$path]:-}" ] || continue
        seen[$path]=1
        name=$(basename "$path")
        case $name in crct10dif-pclmul.*) continue;; esac
        case $name in
            *.ko.xz) xz -dc "$path" > "$STAGE/lib/modules/$kver/${name%.xz}"; name=${name%.xz};;
            *.ko.zst) zstd -qdc "$path" > "$STAGE/lib/modules/$kver/${name%.zst}"; name=${name%.zst};;
            *.ko.gz) gzip -dc "$path" > "$STAGE/lib/modules/$kver/${name%.gz}"; name=${name%.gz};;
            *) cp "$path" "$STAGE/lib/modules/$kver/$name";;
        esac
        echo "/lib/modules/$kver/$name" >> "$STAGE/lib/modules/load-order"
    done <<< "$deps"
done
log "modules: $(xargs -n1 basename < "$STAGE/lib/modules/load-order" | tr '\n' ' ')"

(cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) \
    | gzip -1 > "$OUT/initramfs.gz.tmp"
mv "$OUT/initramfs.gz.tmp" "$OUT/initramfs.gz"
# Replace outputs with rename(2): other runs may be booting from them right now.
cp "$KROOT/boot/vmlinuz-$kver" "$OUT/vmlinuz.tmp"
mv "$OUT/vmlinuz.tmp" "$OUT/vmlinuz"
# The uncompressed ELF vmlinux boots through PVH (QEMU -kernel with an ELF that
# has the PVH note): this skips the in-guest xz decompression, ~4 s under TCG.
if grep -qx 'CONFIG_PVH=y' "$KROOT/boot/config-$kver" 2>/dev/null; then
    python3 - "$OUT/vmlinuz" "$OUT/vmlinux.tmp" <<'PY' && mv "$OUT/vmlinux.tmp" "$OUT/vmlinux" \
        || rm -f "$OUT/vmlinux.tmp" "$OUT/vmlinux"
import lzma, sys
data = open(sys.argv[1], "rb").read()
i = data.find(b"\xfd7zXZ\x00")
if i < 0:
    sys.exit("vmlinuz: no xz payload (not extracting vmlinux)")
out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[i:])
if out[:4] != b"\x7fELF":
    sys.exit("vmlinuz: payload is not ELF")
open(sys.argv[2], "wb").write(out)
PY
fi
printf 'KPKG=%s\nKVER=%s\nSTAMP=%s\n' "$kpkg" "$kver" "$stamp_src" > "$OUT/guest.env"
[ -z "$STAMPFILE" ] || touch "$STAMPFILE"
log "done: $OUT/vmlinuz $OUT/initramfs.gz ($(du -k "$OUT/initramfs.gz" | cut -f1) KiB)"
