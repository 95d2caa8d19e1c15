#!/usr/bin/env python3
"""Boot Debian's Linux 6.1 under Debian's QEMU 7.2 (TCG) with its disk served by a
vhost-user-blk backend, let the guest write and verify a pattern, verify the image
from the host, and print a short summary.

  boot-vhost-user-blk.py                                    # vdm's daemon from build/
  boot-vhost-user-blk.py --backend vdm --daemon PATH/vdm-vhost-user-blk
  boot-vhost-user-blk.py --backend qsd                      # qemu-storage-daemon (peer)
  ... --packed on                                           # vhost-user-blk-pci,packed=on
  ... --reconnect                                           # SIGKILL + restart the backend mid-I/O

Exit status 0 when the guest printed PASS and the host-side check of the image
passed, 1 otherwise (77 when the guest can not be built, e.g. no package mirror).
python3 standard library only.
"""

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
# Shared with the other guest tests (boot-vhost-user-net.py reaches them through this module too).
# (boot-vhost-user-net.py loads this file and uses Child, build_guest, wait_socket and qmp_query from it.)
from vdmguest import (MIB, Child, add_guest_args, build_guest, end_summary, finish_run,  # noqa: E402
                      guest_problems, qemu_argv, qmp_query, wait_socket)

FEATURE_NAMES = {
    1: "SIZE_MAX", 2: "SEG_MAX", 4: "GEOMETRY", 5: "RO", 6: "BLK_SIZE", 9: "FLUSH",
    10: "TOPOLOGY", 11: "CONFIG_WCE", 12: "MQ", 13: "DISCARD", 14: "WRITE_ZEROES",
    24: "NOTIFY_ON_EMPTY", 27: "ANY_LAYOUT", 28: "INDIRECT_DESC", 29: "EVENT_IDX",
    30: "BAD_FEATURE/PROTOCOL_FEATURES", 32: "VERSION_1", 33: "ACCESS_PLATFORM",
    34: "RING_PACKED", 35: "IN_ORDER", 36: "ORDER_PLATFORM", 37: "SR_IOV",
    38: "NOTIFICATION_DATA", 39: "NOTIF_CONFIG_DATA", 40: "RING_RESET",
}


# ---------------------------------------------------------------------------
def feature_bits_text(bits):
    return ",".join("%d%s" % (b, "(" + FEATURE_NAMES[b] + ")" if b in FEATURE_NAMES else "")
                    for b in bits)


def describe_virtio_status(st):
    """x-query-virtio-status (QEMU 7.2) -> short lines. Features there are decoded
    into lists of strings like 'VIRTIO_F_VERSION_1: ...'."""
    def names(fs):
        if not isinstance(fs, dict):
            return str(fs)
        items = []
        for key in ("transports", "dev-features"):
            for t in fs.get(key, []):
                items.append(t.split(":")[0].replace("VIRTIO_BLK_F_", "").replace("VIRTIO_RING_F_", "")
                             .replace("VIRTIO_F_", "").replace("VHOST_USER_F_", "VU_"))
        for key in ("unknown-dev-features", "unknown-features"):
            if fs.get(key):
                items.append("unknown:0x%x" % fs[key])
        return " ".join(items)

    lines = []
    for key in ("host-features", "guest-features", "backend-features"):
        if key in st and names(st[key]):
            lines.append("%-17s %s" % (key + ":", names(st[key])))
    vd = st.get("vhost-dev")
    if vd:
        for key in ("features", "acked-features", "backend-features"):
            if key in vd:
                lines.append("vhost %-11s %s" % (key + ":", names(vd[key])))
        if "protocol-features" in vd:
            pf = vd["protocol-features"]
            lines.append("vhost protocol:   %s" % " ".join(
                p.split(":")[0].replace("VHOST_USER_PROTOCOL_F_", "") for p in pf.get("protocols", []))
                + (" unknown:0x%x" % pf["unknown-protocols"] if pf.get("unknown-protocols") else ""))
    return lines


def backend_argv(args, sock, image):
    if args.backend == "qsd":
        qsd = shutil.which("qemu-storage-daemon") or "/usr/bin/qemu-storage-daemon"
        argv = [qsd, "--blockdev", "driver=file,node-name=file0,filename=%s" % image,
                "--export", "type=vhost-user-blk,id=exp0,node-name=file0,addr.type=unix,"
                "addr.path=%s,writable=on,num-queues=1" % sock]
    else:
        argv = [args.daemon, "--socket", sock, "--image", image]
        if args.serial:
            argv += ["--serial", args.serial]
        if args.packed == "on" and not args.no_daemon_packed:
            argv += ["--packed", "on"]  # the daemon must offer VIRTIO_F_RING_PACKED
    return argv + list(args.daemon_arg or [])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=["qsd", "vdm"], default="vdm")
    ap.add_argument("--daemon", help="path of vdm-vhost-user-blk (for --backend vdm; default "
                    "build/contrib/vhost-user-blk/vdm-vhost-user-blk in this source tree)")
    ap.add_argument("--daemon-arg", action="append", metavar="ARG",
                    help="extra argument for the backend (repeatable), e.g. --daemon-arg=--packed=on")
    ap.add_argument("--packed", choices=["on", "off"], default="off",
                    help="vhost-user-blk-pci packed=on (and, for vdm, the daemon's --packed on)")
    ap.add_argument("--no-daemon-packed", action="store_true",
                    help="do not pass --packed on to the vdm daemon")
    ap.add_argument("--serial", help="vdm: the daemon's --serial; the guest must read it back (GET_ID)")
    ap.add_argument("--pattern-mb", type=int, default=None, metavar="MIB",
                    help="MiB per region written by the guest (3 regions; default 4, 2 with --reconnect)")
    ap.add_argument("--write-bs", default=None, metavar="SIZE",
                    help="guest dd block size for the O_DIRECT writes (default 1M; 4k with --reconnect)")
    ap.add_argument("--reconnect", action="store_true",
                    help="guest loops write/verify; SIGKILL the backend mid-I/O and restart it")
    ap.add_argument("--loop-seconds", type=int, default=None,
                    help="guest write/verify loop length (default 0 = one pass; 12 + 12 * KILLS with --reconnect)")
    ap.add_argument("--kills", type=int, default=1,
                    help="with --reconnect: how many times to kill (every second pass from --kill-at-pass)")
    ap.add_argument("--kill-at-pass", type=int, default=1,
                    help="with --reconnect: kill during the writes of this guest pass")
    ap.add_argument("--kill-delay", type=float, default=0.1,
                    help="with --reconnect: seconds after the pass's writes start")
    ap.add_argument("--down-time", type=float, default=1.0,
                    help="with --reconnect: seconds the backend stays dead")
    ap.add_argument("--spy", action="store_true",
                    help="relay vhost-user through vhost_user_spy.py and log every message (vhost-user.log)")
    ap.add_argument("--no-qmp", action="store_true", help="do not query QEMU's x-query-virtio-status")
    add_guest_args(ap)
    args = ap.parse_args()

    if args.backend == "vdm":
        if not args.daemon:
            args.daemon = os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                       "build", "contrib", "vhost-user-blk", "vdm-vhost-user-blk")
        args.daemon = os.path.abspath(args.daemon)
        if not os.access(args.daemon, os.X_OK):
            print("SKIP: daemon %s is not there" % args.daemon)
            return 77
    if args.pattern_mb is None:
        args.pattern_mb = 2 if args.reconnect else 4
    if args.write_bs is None:
        args.write_bs = "4k" if args.reconnect else "1M"
    if args.loop_seconds is None:
        args.loop_seconds = 12 + 12 * args.kills if args.reconnect else 0

    t_start = time.monotonic()
    genv = build_guest(args.guest_dir, args.build_timeout)
    if genv is None:
        return 77
    t_built = time.monotonic()

    tmp = tempfile.mkdtemp(prefix="vdm-fn-")
    children = []
    qemu = None
    rc = 1

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    summary = []
    try:
        sock = os.path.join(tmp, "vhost-user-blk.sock")
        qmp_sock = os.path.join(tmp, "qmp.sock")
        image = os.path.abspath(args.image) if args.image else os.path.join(tmp, "disk.img")
        if not os.path.exists(image):
            with open(image, "wb") as f:
                f.truncate(args.image_size * MIB)
        blog = os.path.join(tmp, "backend.log")

        def start_backend():
            if os.path.exists(sock):
                os.unlink(sock)
            b = Child("backend", backend_argv(args, sock, image), blog)
            children.append(b)
            if not wait_socket(sock, b, 15.0):
                raise RuntimeError("backend did not create %s (exit %s); log:\n%s"
                                   % (sock, b.proc.poll(), open(blog, errors="replace").read()[-3000:]))
            return b

        backend = start_backend()

        mode = "loop" if args.loop_seconds > 0 else "check"
        append = ("console=ttyS0 quiet panic=-1 rdinit=/init vdm.mode=%s vdm.pattern_mb=%d vdm.seconds=%d vdm.wbs=%s"
                  % (mode, args.pattern_mb, args.loop_seconds, args.write_bs))
        qemu_sock = sock
        spy = None
        if args.spy:
            sys.path.insert(0, HERE)
            import vhost_user_spy
            qemu_sock = os.path.join(tmp, "spy.sock")
            spy = vhost_user_spy.Spy(qemu_sock, sock, os.path.join(tmp, "vhost-user.log"))
        chardev = "socket,id=vu0,path=%s" % qemu_sock + (",reconnect=1" if args.reconnect else "")
        dev = "vhost-user-blk-pci,id=vblk0,chardev=vu0,num-queues=1" + (",packed=on" if args.packed == "on" else "")
        qargv = qemu_argv(args.qemu, args.guest_dir, args.kernel_format, args.machine, append,
                          ["-chardev", chardev, "-device", dev])
        qargv += list(args.qemu_arg or [])
        if not args.no_qmp:
            qargv += ["-qmp", "unix:%s,server=on,wait=off" % qmp_sock]
        print("backend: %s" % " ".join(backend.argv))
        print("qemu:    %s" % " ".join(qargv))
        sys.stdout.flush()

        t_qemu = time.monotonic()
        qemu = Child("qemu", qargv, os.path.join(tmp, "qemu.log"), stdout=subprocess.PIPE)
        children.append(qemu)
        console = open(os.path.join(tmp, "console.log"), "w")
        lines = queue.Queue()

        def reader():
            for raw in qemu.proc.stdout:
                lines.put((time.monotonic(), raw.decode(errors="replace").rstrip("\r\n")))
            lines.put((time.monotonic(), None))
        threading.Thread(target=reader, daemon=True).start()

        deadline = t_qemu + args.timeout
        result = None
        features = []
        disk_line = None
        vstatus = None
        t_booted = t_result = None
        kill_info = None  # the last kill
        kills = []
        passes_after_restart = 0
        timed_out = stalled = False
        last_line = time.monotonic()
        while True:
            try:
                ts, line = lines.get(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
            except queue.Empty:
                now = time.monotonic()
                if now >= deadline:
                    timed_out = True
                    break
                if t_booted is not None and now - last_line > args.stall_timeout:
                    stalled = True
                    break
                continue
            last_line = ts
            if line is None:
                break
            rel = ts - t_qemu
            console.write("[%7.3f] %s\n" % (rel, line))
            console.flush()
            if args.verbose:
                print("[%7.3f] %s" % (rel, line))
                sys.stdout.flush()
            # A kernel message may share the serial line: start at our marker.
            at = line.find("VDM-GUEST-")
            if at > 0:
                line = line[at:]
            if line.startswith("VDM-GUEST-BOOTED"):
                t_booted = ts
            elif line.startswith("VDM-GUEST-DISK:"):
                disk_line = line
            elif line.startswith("VDM-GUEST-FEATURES:"):
                features.append(line)
                if not args.no_qmp and vstatus is None:
                    try:
                        vstatus = qmp_query(qmp_sock, [
                            {"execute": "x-query-virtio"},
                            {"execute": "x-query-virtio-status",
                             "arguments": {"path": "/machine/peripheral/vblk0/virtio-backend"}}])
                        with open(os.path.join(tmp, "virtio-status.json"), "w") as f:
                            json.dump(vstatus, f, indent=1)
                    except Exception as e:  # diagnostics only
                        vstatus = [None, {"error": str(e)}]
            elif line.startswith("VDM-GUEST-IO-START") and args.reconnect and len(kills) < args.kills:
                n = int(re.search(r"n=(\d+)", line).group(1))
                if n >= args.kill_at_pass + 2 * len(kills):
                    time.sleep(args.kill_delay)
                    t_kill = time.monotonic()
                    backend.kill(signal.SIGKILL)
                    if spy:
                        spy.pause()
                    backend.proc.wait()
                    backend.log.close()
                    time.sleep(args.down_time)
                    backend = start_backend()
                    if spy:
                        spy.resume()
                    kill_info = {"pass": n, "at": t_kill - t_qemu,
                                 "restarted": time.monotonic() - t_qemu}
                    kills.append(kill_info)
                    passes_after_restart = 0
                    console.write("[%7.3f] HOST: backend SIGKILLed at %.3f, restarted\n"
                                  % (time.monotonic() - t_qemu, kill_info["at"]))
                    if args.verbose:
                        print("HOST: backend SIGKILLed during pass %d, restarted" % n)
            elif line.startswith("VDM-GUEST-PASS-DONE") and kill_info is not None:
                passes_after_restart += 1
                if passes_after_restart == 1:
                    kill_info["first_pass_after"] = ts - t_qemu
            elif line.startswith("VDM-GUEST-RESULT:"):
                result = line
                t_result = ts
                break

        # Let the guest power off; then make sure QEMU is gone.
        if result is not None:
            try:
                qemu.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        qemu_rc = qemu.stop(3.0)
        t_end = time.monotonic()
        backend_died = backend.proc.poll()
        backend_rc = backend.stop(5.0)
        console.close()

        # ---- checks
        why, host_msg = guest_problems(result, timed_out, stalled, args, qemu_rc, backend_died, backend_rc,
                                       image, features)
        if args.reconnect:
            if len(kills) < args.kills:
                why.append("backend killed %d times, not %d (guest did not reach pass %d)"
                           % (len(kills), args.kills, args.kill_at_pass + 2 * len(kills)))
            elif passes_after_restart < 1:
                why.append("no guest pass completed after the backend restart")
        if args.serial and args.backend == "vdm" and result:
            sm = re.search(r"serial=(\S+)", result)
            if not sm or sm.group(1) != args.serial:
                why.append("guest read serial %s, expected %s" % (sm.group(1) if sm else None, args.serial))
        # ---- summary
        summary.append("== vhost-user-blk guest boot: backend=%s packed=%s%s, kernel %s, QEMU 7.2 TCG %s"
                       % (args.backend, args.packed, " reconnect" if args.reconnect else "",
                          genv.get("KVER"), args.machine))
        for fl in features:
            bm = re.search(r"dev=(\S+) device=(\S+).* bits=(\S*)", fl)
            flags = " ".join(re.findall(r"(RING_PACKED=\d|IN_ORDER=\d|EVENT_IDX=\d|INDIRECT_DESC=\d)", fl))
            if bm:
                bits = [int(b) for b in bm.group(3).split(",") if b]
                summary.append("guest %s device %s negotiated: %s" % (bm.group(1), bm.group(2),
                                                                      feature_bits_text(bits)))
                summary.append("  %s" % flags)
        if vstatus and len(vstatus) > 1:
            st = vstatus[1]
            if isinstance(st, dict) and "error" not in st:
                for ln in describe_virtio_status(st):
                    summary.append("qemu  " + ln)
            else:
                summary.append("qemu  x-query-virtio-status: %s" % st)
        if disk_line:
            summary.append("guest disk:   " + disk_line.split(":", 1)[1].strip())
        if result:
            summary.append("guest result: " + result.split(":", 1)[1].strip())
        summary.append("host check:   " + host_msg)
        for i, k in enumerate(kills):
            summary.append("reconnect:    backend SIGKILLed at %.1fs (guest pass %d), restarted at %.1fs%s"
                           % (k["at"], k["pass"], k["restarted"],
                              (", first pass done after it at %.1fs" % k["first_pass_after"])
                              if "first_pass_after" in k else ", no pass done after it"))
        if kills:
            summary.append("reconnect:    %d guest passes verified after the last restart" % passes_after_restart)
        try:
            blines = open(blog, errors="replace").read().strip().splitlines()
        except OSError:
            blines = []
        if args.backend == "vdm":
            # What the daemon says about features, recovery and its totals.
            keep = [ln for ln in blines if re.search(r"negotiated|resubmit|inflight|total:|error|warn", ln, re.I)]
            seen_lines = set()
            for ln in keep:
                if ln not in seen_lines:
                    seen_lines.add(ln)
                    summary.append("daemon: " + ln)
        rc = end_summary(summary, why, blines, (t_start, t_built, t_qemu, t_booted, t_result, t_end),
                         backend_rc, tmp, args)
    except (KeyboardInterrupt, SystemExit) as e:
        summary.append("RESULT: FAIL (interrupted: %s)" % (e.__class__.__name__ if isinstance(e, KeyboardInterrupt)
                                                         else "signal %d" % (e.code - 128)))
        rc = 1
    except Exception as e:  # a harness error is a failure, with its story
        summary.append("FAIL: harness error: %s" % e)
        summary.append("RESULT: FAIL")
        args.keep = True
        rc = 1
    finally:
        finish_run(children, summary, tmp, args.keep)
    return rc


if __name__ == "__main__":
    sys.exit(main())
