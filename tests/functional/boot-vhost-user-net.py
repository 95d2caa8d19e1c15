#!/usr/bin/env python3
"""Boot Debian's Linux 6.1 under Debian's QEMU 7.2 (TCG) with a virtio-net-pci NIC
served by vdm-vhost-user-net's tap backend over vhost-user, let the guest ping the
host side of the tap (and the host ping the guest), and print a short summary.

  boot-vhost-user-net.py                                    # daemon from build/
  boot-vhost-user-net.py --daemon PATH/vdm-vhost-user-net
  ... --packed on                                           # virtio-net-pci,packed=on

The host side: a network namespace vdmnet-<pid>; the daemon runs in it (`ip netns
exec`) with --tap vdmtap0; the tap gets 10.0.2.1/24 there. QEMU (root namespace,
memfd shared memory) has -netdev vhost-user + virtio-net-pci; the guest's eth0 is
10.0.2.15/24. The guest pings 10.0.2.1 (56 and 1472-byte payloads); once its link
is up the host pings 10.0.2.15 from the namespace; the guest waits for those
echo requests. The daemon's counters (tap frames each way, per queue) and its
negotiation log lines are checked and printed.

Exit status 0 when the guest printed PASS, the host's pings were answered and the
daemon's tap counters show the frames both ways; 1 otherwise; 77 when the guest can
not be built or the daemon is missing. python3 standard library; ip(8), ping(8).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from vdmguest import (TRANSPORT_FEATURE_NAMES, Child, Console, add_guest_args, build_guest,  # noqa: E402
                      daemon_path, exit_on_signals, follow_console, guest_feature_summary, guest_problems,
                      packed_seen, qemu_argv, query_virtio_status, start_daemon, stop_qemu,
                      virtio_status_summary)

# virtio-net device bits (spec 5.1.3) and the transport bits.
NET_FEATURE_NAMES = {
    **TRANSPORT_FEATURE_NAMES,
    0: "CSUM", 1: "GUEST_CSUM", 2: "CTRL_GUEST_OFFLOADS", 3: "MTU", 5: "MAC",
    7: "GUEST_TSO4", 8: "GUEST_TSO6", 9: "GUEST_ECN", 10: "GUEST_UFO", 11: "HOST_TSO4",
    12: "HOST_TSO6", 13: "HOST_ECN", 14: "HOST_UFO", 15: "MRG_RXBUF", 16: "STATUS",
    17: "CTRL_VQ", 18: "CTRL_RX", 19: "CTRL_VLAN", 20: "CTRL_RX_EXTRA", 21: "GUEST_ANNOUNCE",
    22: "MQ", 23: "CTRL_MAC_ADDR",
}

TAP = "vdmtap0"


def run(argv, timeout=15.0, check=True):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                                r.stdout.decode(errors="replace").strip()))
    return r.stdout.decode(errors="replace")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--daemon", help="path of vdm-vhost-user-net (default "
                    "build/contrib/vhost-user-net/vdm-vhost-user-net in this source tree)")
    ap.add_argument("--daemon-arg", action="append", metavar="ARG",
                    help="extra daemon argument (repeatable), e.g. --daemon-arg=--mrg-rxbuf=off")
    ap.add_argument("--packed", choices=["on", "off"], default="off",
                    help="virtio-net-pci packed=on (the daemon offers RING_PACKED either way)")
    ap.add_argument("--pings", type=int, default=5, help="guest -> host pings, 56 bytes (default 5)")
    ap.add_argument("--big-pings", type=int, default=3, help="guest -> host pings, 1472 bytes (default 3)")
    ap.add_argument("--host-pings", type=int, default=5, help="host -> guest pings (default 5; 0: none)")
    ap.add_argument("--vectors", type=int, default=0,
                    help="virtio-net-pci vectors= (default 0: INTx; -1: QEMU's default). Debian's "
                    "QEMU 7.2.22 under TCG segfaults with MSI-X when vhost-user-net starts (DRIVER_OK): "
                    "vhost_net_start -> virtio_pci_set_guest_notifiers -> msix_set_vector_notifiers -> "
                    "vector unmask reads at 0x28, likely proxy->vector_irqfd[1] (NULL without KVM "
                    "irqfd); also with ctrl_vq=off. Backend-independent (loopback too)")
    ap.add_argument("--no-qmp", action="store_true", help="do not query QEMU's x-query-virtio-status")
    add_guest_args(ap, disk=False)
    args = ap.parse_args()

    if not daemon_path(args, "vhost-user-net"):
        return 77
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        print("SKIP: needs root and /dev/net/tun (network namespace, tap device)")
        return 77

    t_start = time.monotonic()
    genv = build_guest(args.guest_dir, args.build_timeout)
    if genv is None:
        return 77
    for tool in ("ip", "ping"):
        if not shutil.which(tool, path=os.environ.get("PATH", "") + ":/sbin:/usr/sbin:/bin"):
            print("SKIP: %s(8) not found (build-guest.sh installs iproute2, iputils-ping)" % tool)
            return 77
    t_built = time.monotonic()

    tmp = tempfile.mkdtemp(prefix="vdm-fn-net-")
    ns = "vdmnet-%d" % os.getpid()
    ns_made = False
    daemon = qemu = None
    host_ping = {"out": None, "rc": None}
    rc = 1
    exit_on_signals()

    summary = []
    try:
        sock = os.path.join(tmp, "vhost-user-net.sock")
        qmp_sock = os.path.join(tmp, "qmp.sock")
        dlog = os.path.join(tmp, "daemon.log")

        run(["ip", "netns", "add", ns])
        ns_made = True
        nsx = ["ip", "netns", "exec", ns]
        run(nsx + ["ip", "link", "set", "lo", "up"])

        dargv = [args.daemon, "--socket", sock, "--tap", TAP]
        if args.packed == "on":
            dargv += ["--packed", "on"]
        dargv += list(args.daemon_arg or [])
        daemon = start_daemon("daemon", nsx + dargv, sock, dlog)
        # The daemon created the tap in the namespace before listening.
        # IPv6 off on the tap: no router solicitations or DAD in the counters.
        run(nsx + ["sysctl", "-q", "-w", "net.ipv6.conf.%s.disable_ipv6=1" % TAP], check=False)
        run(nsx + ["ip", "addr", "add", "10.0.2.1/24", "dev", TAP])
        run(nsx + ["ip", "link", "set", TAP, "up"])

        append = ("console=ttyS0 quiet panic=-1 rdinit=/init vdm.mode=net vdm.ip=10.0.2.15 vdm.peer=10.0.2.1"
                  " vdm.pings=%d vdm.big_pings=%d vdm.host_pings=%d ipv6.disable=1"
                  % (args.pings, args.big_pings, args.host_pings))
        dev = "virtio-net-pci,id=vnet0,netdev=n0,mac=52:54:00:12:34:56" + (",packed=on" if args.packed == "on" else "")
        if args.vectors >= 0:
            dev += ",vectors=%d" % args.vectors
        qargv = qemu_argv(args.qemu, args.guest_dir, args.kernel_format, args.machine, append,
                          ["-chardev", "socket,id=c0,path=%s" % sock,
                           "-netdev", "vhost-user,id=n0,chardev=c0", "-device", dev])
        qargv += list(args.qemu_arg or [])
        if not args.no_qmp:
            qargv += ["-qmp", "unix:%s,server=on,wait=off" % qmp_sock]
        print("namespace: %s, tap %s 10.0.2.1/24" % (ns, TAP))
        print("daemon: %s" % " ".join(daemon.argv))
        print("qemu:   %s" % " ".join(qargv))
        sys.stdout.flush()

        t_qemu = time.monotonic()
        qemu = Child("qemu", qargv, os.path.join(tmp, "qemu.log"), stdout=subprocess.PIPE)
        console = Console(qemu.proc, os.path.join(tmp, "console.log"), t_qemu, args.verbose)

        def pinger():
            try:
                r = subprocess.run(nsx + ["ping", "-c", str(args.host_pings), "-i", "0.5", "-W", "3",
                                          "-w", str(args.host_pings * 3 + 10), "10.0.2.15"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, timeout=args.host_pings * 3 + 20)
                host_ping["out"], host_ping["rc"] = r.stdout.decode(errors="replace"), r.returncode
            except subprocess.TimeoutExpired:
                host_ping["out"], host_ping["rc"] = "timed out", -1

        seen = {"result": None, "t_result": None, "net_up": None, "t_up": None, "vstatus": None,
                "ping_thread": None}
        features, ping_lines = [], []

        def on_line(ts, line):
            if line.startswith("VDM-GUEST-FEATURES:"):
                features.append(line)
                if not args.no_qmp and seen["vstatus"] is None:
                    seen["vstatus"] = query_virtio_status(qmp_sock, "vnet0", tmp)
            elif line.startswith("VDM-GUEST-NET-UP"):
                seen["net_up"], seen["t_up"] = line, ts
                if args.host_pings > 0:
                    seen["ping_thread"] = threading.Thread(target=pinger, daemon=True)
                    seen["ping_thread"].start()
            elif line.startswith("VDM-GUEST-PING-"):
                ping_lines.append(line)
            elif line.startswith("VDM-GUEST-RESULT:"):
                seen["result"], seen["t_result"] = line, ts
                return True
            return False

        timed_out, stalled, t_booted = follow_console(console, t_qemu + args.timeout, args.stall_timeout, on_line)
        result, t_result, net_up, t_up = seen["result"], seen["t_result"], seen["net_up"], seen["t_up"]
        ping_thread = seen["ping_thread"]
        qemu_rc = stop_qemu(qemu, result)
        t_end = time.monotonic()
        if ping_thread:
            ping_thread.join(args.host_pings * 3 + 25)
        daemon_died = daemon.proc.poll()
        daemon_rc = daemon.stop(5.0)
        console.close()
        dtext = open(dlog, errors="replace").read()

        # ---- checks
        why, _ = guest_problems(result, timed_out, stalled, args, qemu_rc, daemon_died, daemon_rc, None,
                                features, who="daemon")
        hp_sent = hp_recv = 0
        if args.host_pings > 0:
            m = re.search(r"(\d+) packets transmitted, (\d+) received", host_ping["out"] or "")
            if m:
                hp_sent, hp_recv = int(m.group(1)), int(m.group(2))
            if hp_recv != args.host_pings:
                why.append("host -> guest ping: %s" % (
                    "%d/%d answered" % (hp_recv, hp_sent) if m else (host_ping["out"] or "not run").strip()[-300:]))
        tap = None
        for m in re.finditer(r"stats \(total\): tap \S+: tx frames=(\d+) tx_drop_write=(\d+) "
                             r"rx frames=(\d+) rx_drop=(\d+)", dtext):
            tap = tuple(int(x) for x in m.groups())
        want = args.pings + args.big_pings + args.host_pings
        if "negotiated features" not in dtext:
            why.append("the daemon never started a ring (no 'negotiated features' line); QEMU 7.2's "
                       "vhost-user-net sends SET_VRING_ENABLE only before SET_FEATURES")
        if tap is None:
            why.append("no tap counters in the daemon's log")
        else:
            # Guest TX to the tap: its echo requests and replies (+ ARP);
            # tap to guest RX: the replies and the host's requests (+ ARP).
            if tap[0] < want or tap[2] < want:
                why.append("daemon tap counters tx=%d rx=%d, expected >= %d each way" % (tap[0], tap[2], want))
            if tap[1]:
                why.append("daemon: %d tap writes failed" % tap[1])
        guest_packed = packed_seen(features)
        dneg = {}
        for m in re.finditer(r"vdm-vhost-user-net: (VIRTIO_\w+) (negotiated|NOT negotiated)", dtext):
            dneg[m.group(1)] = m.group(2)
        if guest_packed is not None and "VIRTIO_F_RING_PACKED" in dneg and \
                (dneg["VIRTIO_F_RING_PACKED"] == "negotiated") != guest_packed:
            why.append("guest RING_PACKED=%s but the daemon says %s" % (guest_packed, dneg["VIRTIO_F_RING_PACKED"]))
        ok = not why

        # ---- summary
        summary.append("== vhost-user-net guest boot: tap backend, packed=%s, kernel %s, QEMU 7.2 TCG %s"
                       % (args.packed, genv.get("KVER"), args.machine))
        summary += guest_feature_summary(features, NET_FEATURE_NAMES)
        for m in re.finditer(r"vdm-vhost-user-net: (negotiated features .*|offered features: .*)", dtext):
            summary.append("daemon " + m.group(1))
        for k, v in sorted(dneg.items()):
            summary.append("daemon %s %s" % (k, v))
        summary += virtio_status_summary(seen["vstatus"], "VIRTIO_NET_F_")
        if net_up:
            summary.append("guest net:    " + net_up.split(None, 1)[1])
        for pl in ping_lines:
            if "transmitted" in pl or "round-trip" in pl:
                summary.append("guest " + pl[len("VDM-GUEST-"):])
        if result:
            summary.append("guest result: " + result.split(":", 1)[1].strip())
        if args.host_pings > 0:
            last = [ln for ln in (host_ping["out"] or "").splitlines() if "transmitted" in ln or "rtt" in ln]
            summary.append("host ping:    %s (exit %s)" % ("; ".join(last) or host_ping["out"], host_ping["rc"]))
        if tap:
            summary.append("daemon tap:   tx frames=%d tx_drop_write=%d rx frames=%d rx_drop=%d"
                           % tap)
        for m in re.finditer(r"vdm-vhost-user-net: stats \(total\): (queue pair 0: .*)", dtext):
            summary.append("daemon " + " ".join(m.group(1).split()[:9]))
        summary.append("timing:       guest build %.1fs, boot %s, link up %s, result %s, QEMU exit %.1fs"
                       % (t_built - t_start,
                          "%.1fs" % (t_booted - t_qemu) if t_booted else "-",
                          "%.1fs" % (t_up - t_qemu) if t_up else "-",
                          "%.1fs" % (t_result - t_qemu) if t_result else "-", t_end - t_qemu))
        summary.append("RESULT: %s%s" % ("PASS" if ok else "FAIL", "" if ok else ": " + "; ".join(why)))
        rc = 0 if ok else 1
        if not ok:
            summary.append("--- daemon.log (tail)")
            summary.extend(dtext.splitlines()[-25:])
            try:
                with open(os.path.join(tmp, "console.log")) as f:
                    summary.append("--- console.log (tail)")
                    summary.extend(f.read().splitlines()[-25:])
            except OSError:
                pass
    except Exception as e:
        summary.append("RESULT: FAIL: %s: %s" % (type(e).__name__, e))
        rc = 1
    finally:
        for c in (qemu, daemon):
            if c is not None and c.alive():
                c.proc.kill()
                c.proc.wait()
        if ns_made:
            try:
                run(["ip", "netns", "del", ns], check=False)
            except Exception:
                pass
        print("\n".join(summary))
        if args.keep or rc != 0:
            print("logs: %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main())
