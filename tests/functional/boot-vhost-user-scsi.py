#!/usr/bin/env python3
"""Boot Debian's Linux 6.1 under Debian's QEMU 7.2 (TCG) with a vhost-user-scsi-pci
adapter served by vdm-vhost-user-scsi; the guest finds the disk (sda: virtio_scsi +
sd_mod), discards 1 MiB, writes a pattern to three regions in parallel, reads it back
and checks it; the host then checks the image and prints a short summary.

  boot-vhost-user-scsi.py                                  # the daemon from build/
  boot-vhost-user-scsi.py --daemon PATH/vdm-vhost-user-scsi
  ... --packed on --expect-packed on                       # vhost-user-scsi-pci,packed=on

Exit status 0 when the guest printed PASS and the host-side check of the image
passed, 1 otherwise (77 when the guest can not be built or the daemon is missing).
python3 standard library only; shared pieces live in vdmguest.py.
"""

import argparse
import os
import re
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

# virtio-scsi device bits (spec 5.6.3) and the transport bits the guest may accept.
FEATURE_NAMES = {**TRANSPORT_FEATURE_NAMES, 0: "INOUT", 1: "HOTPLUG", 2: "CHANGE", 3: "T10_PI"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--daemon", help="path of vdm-vhost-user-scsi (default "
                    "build/contrib/vhost-user-scsi/vdm-vhost-user-scsi in this source tree)")
    ap.add_argument("--daemon-arg", action="append", metavar="ARG", help="extra daemon argument (repeatable)")
    ap.add_argument("--packed", choices=["on", "off"], default="off", help="vhost-user-scsi-pci packed=on")
    ap.add_argument("--serial", default="vdm-scsi-fn", help="the unit's serial; the guest must read it (VPD 0x80)")
    ap.add_argument("--pattern-mb", type=int, default=4, metavar="MIB", help="MiB per region (3 regions)")
    # Off by default: x-query-virtio-status on a vhost-user-scsi-pci device kills QEMU 7.2
    # (SIGSEGV, seen here right after the guest driver came up).
    ap.add_argument("--qmp", action="store_true", help="query QEMU's x-query-virtio-status (crashes QEMU 7.2)")
    add_guest_args(ap)
    args = ap.parse_args()

    if not daemon_path(args, "vhost-user-scsi"):
        return 77

    t_start = time.monotonic()
    genv = build_guest(args.guest_dir, args.build_timeout)
    if genv is None:
        return 77
    t_built = time.monotonic()

    tmp = tempfile.mkdtemp(prefix="vdm-fn-scsi-")
    children = []
    summary = []
    rc = 1
    exit_on_signals()

    try:
        sock = os.path.join(tmp, "vhost-user-scsi.sock")
        qmp_sock = os.path.join(tmp, "qmp.sock")
        image = disk_image(args, tmp)
        blog = os.path.join(tmp, "backend.log")
        dargv = [args.daemon, "--socket-path", sock, "--blk-file", image, "--serial", args.serial,
                 "--packed", args.packed] + list(args.daemon_arg or [])
        backend = start_daemon("backend", dargv, sock, blog)
        children.append(backend)

        append = ("console=ttyS0 quiet panic=-1 rdinit=/init vdm.mode=check vdm.disk=sda vdm.pattern_mb=%d"
                  % args.pattern_mb)
        dev = "vhost-user-scsi-pci,id=vscsi0,chardev=vu0,num_queues=1" + (",packed=on" if args.packed == "on" else "")
        qargv = qemu_argv(args.qemu, args.guest_dir, args.kernel_format, args.machine, append,
                          ["-chardev", "socket,id=vu0,path=%s" % sock, "-device", dev])
        qargv += list(args.qemu_arg or [])
        if args.qmp:
            qargv += ["-qmp", "unix:%s,server=on,wait=off" % qmp_sock]
        print("backend: %s" % " ".join(dargv))
        print("qemu:    %s" % " ".join(qargv))
        sys.stdout.flush()

        t_qemu = time.monotonic()
        qemu = Child("qemu", qargv, os.path.join(tmp, "qemu.log"), stdout=subprocess.PIPE)
        children.append(qemu)
        console = Console(qemu.proc, os.path.join(tmp, "console.log"), t_qemu, args.verbose)
        seen = {"result": None, "t_result": None, "disk": None, "scsi": None, "vstatus": None}
        features = []

        def on_line(ts, line):
            if line.startswith("VDM-GUEST-SCSI:"):
                seen["scsi"] = line
            elif line.startswith("VDM-GUEST-DISK:"):
                seen["disk"] = line
            elif line.startswith("VDM-GUEST-FEATURES:"):
                features.append(line)
                if args.qmp and seen["vstatus"] is None:
                    seen["vstatus"] = query_virtio_status(qmp_sock, "vscsi0", tmp)
            elif line.startswith("VDM-GUEST-RESULT:"):
                seen["result"], seen["t_result"] = line, ts
                return True
            return False

        timed_out, stalled, t_booted = follow_console(console, t_qemu + args.timeout, args.stall_timeout, on_line)
        result, t_result, disk_line, scsi_line = seen["result"], seen["t_result"], seen["disk"], seen["scsi"]
        qemu_rc = stop_qemu(qemu, result)
        t_end = time.monotonic()
        backend_died = backend.proc.poll()
        backend_rc = backend.stop(5.0)
        console.close()

        # ---- checks
        why, host_msg = guest_problems(result, timed_out, stalled, args, qemu_rc, backend_died, backend_rc,
                                       image, features)
        if result:
            sm = re.search(r"serial=(\S+)", result)
            if not sm or sm.group(1) != args.serial:
                why.append("guest read serial %s, expected %s" % (sm.group(1) if sm else None, args.serial))
            dm = re.search(r"discard=(\S+)", result)
            if not dm or dm.group(1) != "ok":
                why.append("guest discard: %s, expected ok (UNMAP)" % (dm.group(1) if dm else None))
        if scsi_line is None and result is not None:
            why.append("the guest's disk is not a SCSI disk (no VDM-GUEST-SCSI line)")
        # ---- summary
        summary.append("== vhost-user-scsi guest boot: packed=%s, kernel %s, QEMU 7.2 TCG %s"
                       % (args.packed, genv.get("KVER"), args.machine))
        summary += guest_feature_summary(features, FEATURE_NAMES, flags=False)
        summary += virtio_status_summary(seen["vstatus"], "VIRTIO_SCSI_F_")
        if scsi_line:
            summary.append("guest scsi:   " + scsi_line.split(":", 1)[1].strip())
        if disk_line:
            summary.append("guest disk:   " + disk_line.split(":", 1)[1].strip())
        if result:
            summary.append("guest result: " + result.split(":", 1)[1].strip())
        summary.append("host check:   " + host_msg)
        blines, dsummary = backend_log(blog, r"negotiated|total:|error|warn")
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
