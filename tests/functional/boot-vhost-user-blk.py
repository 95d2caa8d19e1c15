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
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vdmguest import (TRANSPORT_FEATURE_NAMES, Child, Console, add_guest_args, backend_log, build_guest,  # noqa: E402
                      daemon_path, disk_image, end_summary, exit_on_signals, finish_run, follow_console,
                      guest_feature_summary, guest_problems, harness_failure, qemu_argv, query_virtio_status,
                      start_daemon, stop_qemu, virtio_status_summary)

# virtio-blk device bits (spec 5.2.3) and the transport bits.
FEATURE_NAMES = {
    **TRANSPORT_FEATURE_NAMES,
    1: "SIZE_MAX", 2: "SEG_MAX", 4: "GEOMETRY", 5: "RO", 6: "BLK_SIZE", 9: "FLUSH",
    10: "TOPOLOGY", 11: "CONFIG_WCE", 12: "MQ", 13: "DISCARD", 14: "WRITE_ZEROES",
}


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

    if args.backend == "vdm" and not daemon_path(args, "vhost-user-blk"):
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
    exit_on_signals()

    summary = []
    try:
        sock = os.path.join(tmp, "vhost-user-blk.sock")
        qmp_sock = os.path.join(tmp, "qmp.sock")
        image = disk_image(args, tmp)
        blog = os.path.join(tmp, "backend.log")

        def start_backend():
            b = start_daemon("backend", backend_argv(args, sock, image), sock, blog)
            children.append(b)
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
        console = Console(qemu.proc, os.path.join(tmp, "console.log"), t_qemu, args.verbose)
        # What the console told; "kill": the last kill of the backend.
        seen = {"result": None, "t_result": None, "disk": None, "vstatus": None, "backend": backend,
                "kill": None, "passes_after_restart": 0}
        features = []
        kills = []

        def on_line(ts, line):
            if line.startswith("VDM-GUEST-DISK:"):
                seen["disk"] = line
            elif line.startswith("VDM-GUEST-FEATURES:"):
                features.append(line)
                if not args.no_qmp and seen["vstatus"] is None:
                    seen["vstatus"] = query_virtio_status(qmp_sock, "vblk0", tmp)
            elif line.startswith("VDM-GUEST-IO-START") and args.reconnect and len(kills) < args.kills:
                n = int(re.search(r"n=(\d+)", line).group(1))
                if n >= args.kill_at_pass + 2 * len(kills):
                    time.sleep(args.kill_delay)
                    t_kill = time.monotonic()
                    seen["backend"].kill(signal.SIGKILL)
                    if spy:
                        spy.pause()
                    seen["backend"].proc.wait()
                    seen["backend"].log.close()
                    time.sleep(args.down_time)
                    seen["backend"] = start_backend()
                    if spy:
                        spy.resume()
                    seen["kill"] = {"pass": n, "at": t_kill - t_qemu, "restarted": time.monotonic() - t_qemu}
                    kills.append(seen["kill"])
                    seen["passes_after_restart"] = 0
                    console.note("backend SIGKILLed at %.3f, restarted" % seen["kill"]["at"])
                    if args.verbose:
                        print("HOST: backend SIGKILLed during pass %d, restarted" % n)
            elif line.startswith("VDM-GUEST-PASS-DONE") and seen["kill"] is not None:
                seen["passes_after_restart"] += 1
                if seen["passes_after_restart"] == 1:
                    seen["kill"]["first_pass_after"] = ts - t_qemu
            elif line.startswith("VDM-GUEST-RESULT:"):
                seen["result"], seen["t_result"] = line, ts
                return True
            return False

        timed_out, stalled, t_booted = follow_console(console, t_qemu + args.timeout, args.stall_timeout, on_line)
        result, t_result, disk_line, backend = seen["result"], seen["t_result"], seen["disk"], seen["backend"]
        passes_after_restart = seen["passes_after_restart"]
        qemu_rc = stop_qemu(qemu, result)
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
        summary += guest_feature_summary(features, FEATURE_NAMES)
        summary += virtio_status_summary(seen["vstatus"], "VIRTIO_BLK_F_")
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
        # What vdm's daemon says about features, recovery and its totals.
        blines, dsummary = backend_log(blog, r"negotiated|resubmit|inflight|total:|error|warn"
                                       if args.backend == "vdm" else None)
        summary += dsummary
        rc = end_summary(summary, why, blines, (t_start, t_built, t_qemu, t_booted, t_result, t_end),
                         backend_rc, tmp, args)
    except (KeyboardInterrupt, SystemExit, Exception) as e:  # a harness error is a failure, with its story
        rc = harness_failure(e, summary, args)
    finally:
        finish_run(children, summary, tmp, args.keep)
    return rc


if __name__ == "__main__":
    sys.exit(main())
