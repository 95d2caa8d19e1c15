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
import importlib.util
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

# Shared helpers (children with PDEATHSIG, QMP, the guest build) of the blk test.
_spec = importlib.util.spec_from_file_location("boot_vub", os.path.join(HERE, "boot-vhost-user-blk.py"))
vub = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vub)

# Transport bits (24 and up) as in the blk test; device bits of virtio-net (spec 5.1.3).
NET_FEATURE_NAMES = {b: n for b, n in vub.FEATURE_NAMES.items() if b >= 24}
NET_FEATURE_NAMES.update({
    0: "CSUM", 1: "GUEST_CSUM", 2: "CTRL_GUEST_OFFLOADS", 3: "MTU", 5: "MAC",
    7: "GUEST_TSO4", 8: "GUEST_TSO6", 9: "GUEST_ECN", 10: "GUEST_UFO", 11: "HOST_TSO4",
    12: "HOST_TSO6", 13: "HOST_ECN", 14: "HOST_UFO", 15: "MRG_RXBUF", 16: "STATUS",
    17: "CTRL_VQ", 18: "CTRL_RX", 19: "CTRL_VLAN", 20: "CTRL_RX_EXTRA", 21: "GUEST_ANNOUNCE",
    22: "MQ", 23: "CTRL_MAC_ADDR",
})

TAP = "vdmtap0"


def bits_text(bits):
    return ",".join("%d%s" % (b, "(" + NET_FEATURE_NAMES[b] + ")" if b in NET_FEATURE_NAMES else "")
                    for b in bits)


def run(argv, timeout=15.0, check=True):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), r.returncode,
                                                r.stdout.decode(errors="replace").strip()))
    return r.stdout.decode(errors="replace")


def describe_virtio_status(st):
    def names(fs):
        if not isinstance(fs, dict):
            return str(fs)
        items = []
        for key in ("transports", "dev-features"):
            for t in fs.get(key, []):
                items.append(t.split(":")[0].replace("VIRTIO_NET_F_", "").replace("VIRTIO_RING_F_", "")
                             .replace("VIRTIO_F_", "").replace("VHOST_USER_F_", "VU_")
                             .replace("VHOST_F_", "VHOST_"))
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--daemon", help="path of vdm-vhost-user-net (default "
                    "build/contrib/vhost-user-net/vdm-vhost-user-net in this source tree)")
    ap.add_argument("--daemon-arg", action="append", metavar="ARG",
                    help="extra daemon argument (repeatable), e.g. --daemon-arg=--mrg-rxbuf=off")
    ap.add_argument("--packed", choices=["on", "off"], default="off",
                    help="virtio-net-pci packed=on (the daemon offers RING_PACKED either way)")
    ap.add_argument("--expect-packed", choices=["on", "off", "any"], default="any",
                    help="fail unless the guest negotiated RING_PACKED as stated")
    ap.add_argument("--pings", type=int, default=5, help="guest -> host pings, 56 bytes (default 5)")
    ap.add_argument("--big-pings", type=int, default=3, help="guest -> host pings, 1472 bytes (default 3)")
    ap.add_argument("--host-pings", type=int, default=5, help="host -> guest pings (default 5; 0: none)")
    ap.add_argument("--timeout", type=float, default=150.0, help="seconds for the whole guest run")
    ap.add_argument("--stall-timeout", type=float, default=45.0,
                    help="fail when the booted guest prints nothing for this many seconds")
    ap.add_argument("--build-timeout", type=float, default=1200.0)
    ap.add_argument("--guest-dir", default=os.environ.get("VDM_GUEST_DIR", "/var/tmp/vdm-guest"),
                    help="where build-guest.sh caches the kernel and initramfs")
    ap.add_argument("--kernel-format", choices=["pvh", "bzimage"], default="pvh")
    ap.add_argument("--machine", choices=["q35", "pc"], default="q35")
    ap.add_argument("--vectors", type=int, default=0,
                    help="virtio-net-pci vectors= (default 0: INTx; -1: QEMU's default). Debian's "
                    "QEMU 7.2.22 under TCG segfaults with MSI-X when vhost-user-net starts (DRIVER_OK): "
                    "vhost_net_start -> virtio_pci_set_guest_notifiers -> msix_set_vector_notifiers -> "
                    "vector unmask reads at 0x28, likely proxy->vector_irqfd[1] (NULL without KVM "
                    "irqfd); also with ctrl_vq=off. Backend-independent (loopback too)")
    ap.add_argument("--no-qmp", action="store_true", help="do not query QEMU's x-query-virtio-status")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--qemu-arg", action="append", metavar="ARG", help="extra QEMU argument (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo the guest console")
    args = ap.parse_args()

    if not args.daemon:
        args.daemon = os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                   "build", "contrib", "vhost-user-net", "vdm-vhost-user-net")
    args.daemon = os.path.abspath(args.daemon)
    if not os.access(args.daemon, os.X_OK):
        print("SKIP: daemon %s is not there" % args.daemon)
        return 77
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        print("SKIP: needs root and /dev/net/tun (network namespace, tap device)")
        return 77

    t_start = time.monotonic()
    genv = vub.build_guest(args.guest_dir, args.build_timeout)
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

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

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
        daemon = vub.Child("daemon", nsx + dargv, dlog)
        if not vub.wait_socket(sock, daemon, 15.0):
            raise RuntimeError("daemon did not create %s (exit %s); log:\n%s"
                               % (sock, daemon.proc.poll(), open(dlog, errors="replace").read()[-3000:]))
        # The daemon created the tap in the namespace before listening.
        # IPv6 off on the tap: no router solicitations or DAD in the counters.
        run(nsx + ["sysctl", "-q", "-w", "net.ipv6.conf.%s.disable_ipv6=1" % TAP], check=False)
        run(nsx + ["ip", "addr", "add", "10.0.2.1/24", "dev", TAP])
        run(nsx + ["ip", "link", "set", TAP, "up"])

        kernel = os.path.join(args.guest_dir, "vmlinux")
        if args.kernel_format == "bzimage" or not os.path.exists(kernel):
            kernel = os.path.join(args.guest_dir, "vmlinuz")
        append = ("console=ttyS0 quiet panic=-1 rdinit=/init vdm.mode=net vdm.ip=10.0.2.15 vdm.peer=10.0.2.1"
                  " vdm.pings=%d vdm.big_pings=%d vdm.host_pings=%d ipv6.disable=1"
                  % (args.pings, args.big_pings, args.host_pings))
        dev = "virtio-net-pci,id=vnet0,netdev=n0,mac=52:54:00:12:34:56" + (",packed=on" if args.packed == "on" else "")
        if args.vectors >= 0:
            dev += ",vectors=%d" % args.vectors
        qargv = [args.qemu, "-accel", "tcg", "-m", "512M",
                 "-object", "memory-backend-memfd,id=mem,size=512M,share=on",
                 "-machine", "%s,memory-backend=mem" % args.machine,
                 "-bios", "/usr/share/qemu/qboot.rom",
                 "-nodefaults", "-nographic", "-serial", "stdio", "-no-reboot",
                 "-kernel", kernel,
                 "-initrd", os.path.join(args.guest_dir, "initramfs.gz"),
                 "-append", append,
                 "-chardev", "socket,id=c0,path=%s" % sock,
                 "-netdev", "vhost-user,id=n0,chardev=c0",
                 "-device", dev]
        qargv += list(args.qemu_arg or [])
        if not args.no_qmp:
            qargv += ["-qmp", "unix:%s,server=on,wait=off" % qmp_sock]
        print("namespace: %s, tap %s 10.0.2.1/24" % (ns, TAP))
        print("daemon: %s" % " ".join(daemon.argv))
        print("qemu:   %s" % " ".join(qargv))
        sys.stdout.flush()

        t_qemu = time.monotonic()
        qemu = vub.Child("qemu", qargv, os.path.join(tmp, "qemu.log"), stdout=subprocess.PIPE)
        console = open(os.path.join(tmp, "console.log"), "w")
        lines = queue.Queue()

        def reader():
            for raw in qemu.proc.stdout:
                lines.put((time.monotonic(), raw.decode(errors="replace").rstrip("\r\n")))
            lines.put((time.monotonic(), None))
        threading.Thread(target=reader, daemon=True).start()

        def pinger():
            try:
                r = subprocess.run(nsx + ["ping", "-c", str(args.host_pings), "-i", "0.5", "-W", "3",
                                          "-w", str(args.host_pings * 3 + 10), "10.0.2.15"],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, timeout=args.host_pings * 3 + 20)
                host_ping["out"], host_ping["rc"] = r.stdout.decode(errors="replace"), r.returncode
            except subprocess.TimeoutExpired:
                host_ping["out"], host_ping["rc"] = "timed out", -1
        ping_thread = None

        deadline = t_qemu + args.timeout
        result = net_up = None
        features, ping_lines = [], []
        vstatus = None
        t_booted = t_up = t_result = None
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
            at = line.find("VDM-GUEST-")
            if at > 0:
                line = line[at:]
            if line.startswith("VDM-GUEST-BOOTED"):
                t_booted = ts
            elif line.startswith("VDM-GUEST-FEATURES:"):
                features.append(line)
                if not args.no_qmp and vstatus is None:
                    try:
                        vstatus = vub.qmp_query(qmp_sock, [
                            {"execute": "x-query-virtio"},
                            {"execute": "x-query-virtio-status",
                             "arguments": {"path": "/machine/peripheral/vnet0/virtio-backend"}}])
                        with open(os.path.join(tmp, "virtio-status.json"), "w") as f:
                            json.dump(vstatus, f, indent=1)
                    except Exception as e:  # diagnostics only
                        vstatus = [None, {"error": str(e)}]
            elif line.startswith("VDM-GUEST-NET-UP"):
                net_up, t_up = line, ts
                if args.host_pings > 0:
                    ping_thread = threading.Thread(target=pinger, daemon=True)
                    ping_thread.start()
            elif line.startswith("VDM-GUEST-PING-"):
                ping_lines.append(line)
            elif line.startswith("VDM-GUEST-RESULT:"):
                result, t_result = line, ts
                break

        if result is not None:
            try:
                qemu.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        qemu_rc = qemu.stop(3.0)
        t_end = time.monotonic()
        if ping_thread:
            ping_thread.join(args.host_pings * 3 + 25)
        daemon_died = daemon.proc.poll()
        daemon_rc = daemon.stop(5.0)
        console.close()
        dtext = open(dlog, errors="replace").read()

        # ---- checks
        ok = True
        why = []
        if result is None:
            ok = False
            why.append("no VDM-GUEST-RESULT line (%s)" % (
                "timeout %ds" % args.timeout if timed_out else
                "guest silent for %ds" % args.stall_timeout if stalled else
                "QEMU exited %s" % qemu_rc))
        elif result.split()[1] != "PASS":
            ok = False
            why.append("guest: " + result)
        if daemon_died is not None:
            ok = False
            why.append("daemon died during the run (status %s)" % daemon_died)
        elif daemon_rc not in (0, -signal.SIGTERM):
            ok = False
            why.append("daemon exit status %s after SIGTERM" % daemon_rc)
        hp_sent = hp_recv = 0
        if args.host_pings > 0:
            m = re.search(r"(\d+) packets transmitted, (\d+) received", host_ping["out"] or "")
            if m:
                hp_sent, hp_recv = int(m.group(1)), int(m.group(2))
            if hp_recv != args.host_pings:
                ok = False
                why.append("host -> guest ping: %s" % (
                    "%d/%d answered" % (hp_recv, hp_sent) if m else (host_ping["out"] or "not run").strip()[-300:]))
        tap = None
        for m in re.finditer(r"stats \(total\): tap \S+: tx frames=(\d+) tx_drop_write=(\d+) "
                             r"rx frames=(\d+) rx_drop=(\d+)", dtext):
            tap = tuple(int(x) for x in m.groups())
        want = args.pings + args.big_pings + args.host_pings
        if "negotiated features" not in dtext:
            ok = False
            why.append("the daemon never started a ring (no 'negotiated features' line); QEMU 7.2's "
                       "vhost-user-net sends SET_VRING_ENABLE only before SET_FEATURES")
        if tap is None:
            ok = False
            why.append("no tap counters in the daemon's log")
        else:
            # Guest TX to the tap: its echo requests and replies (+ ARP);
            # tap to guest RX: the replies and the host's requests (+ ARP).
            if tap[0] < want or tap[2] < want:
                ok = False
                why.append("daemon tap counters tx=%d rx=%d, expected >= %d each way" % (tap[0], tap[2], want))
            if tap[1]:
                ok = False
                why.append("daemon: %d tap writes failed" % tap[1])
        packed_seen = None
        for fl in features:
            pm = re.search(r"RING_PACKED=(\d)", fl)
            if pm:
                packed_seen = pm.group(1) == "1"
        if args.expect_packed != "any" and packed_seen is not (args.expect_packed == "on"):
            ok = False
            why.append("guest RING_PACKED=%s, expected %s" % (packed_seen, args.expect_packed))
        dneg = {}
        for m in re.finditer(r"vdm-vhost-user-net: (VIRTIO_\w+) (negotiated|NOT negotiated)", dtext):
            dneg[m.group(1)] = m.group(2)
        if packed_seen is not None and "VIRTIO_F_RING_PACKED" in dneg and \
                (dneg["VIRTIO_F_RING_PACKED"] == "negotiated") != packed_seen:
            ok = False
            why.append("guest RING_PACKED=%s but the daemon says %s" % (packed_seen, dneg["VIRTIO_F_RING_PACKED"]))

        # ---- summary
        summary.append("== vhost-user-net guest boot: tap backend, packed=%s, kernel %s, QEMU 7.2 TCG %s"
                       % (args.packed, genv.get("KVER"), args.machine))
        for fl in features:
            bm = re.search(r"dev=(\S+) device=(\S+).* bits=(\S*)", fl)
            flags = " ".join(re.findall(r"(RING_PACKED=\d|IN_ORDER=\d|EVENT_IDX=\d|INDIRECT_DESC=\d)", fl))
            if bm:
                bits = [int(b) for b in bm.group(3).split(",") if b]
                summary.append("guest %s device %s negotiated: %s" % (bm.group(1), bm.group(2), bits_text(bits)))
                summary.append("  %s" % flags)
        for m in re.finditer(r"vdm-vhost-user-net: (negotiated features .*|offered features: .*)", dtext):
            summary.append("daemon " + m.group(1))
        for k, v in sorted(dneg.items()):
            summary.append("daemon %s %s" % (k, v))
        if vstatus and len(vstatus) > 1:
            st = vstatus[1]
            if isinstance(st, dict) and "error" not in st:
                for ln in describe_virtio_status(st):
                    summary.append("qemu  " + ln)
            else:
                summary.append("qemu  x-query-virtio-status: %s" % st)
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
