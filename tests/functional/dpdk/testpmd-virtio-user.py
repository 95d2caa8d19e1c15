#!/usr/bin/env python3
"""DPDK's virtio-user driver (dpdk-testpmd, Debian's DPDK 22.11) against a
vhost-user-net backend in loopback, with VIRTIO_F_IN_ORDER.

  testpmd-virtio-user.py --backend vdm --daemon build/contrib/vhost-user-net/vdm-vhost-user-net \\
                         --packed 0|1 --mrg-rxbuf 0|1 --queues 1|2
  testpmd-virtio-user.py --backend dpdk-vhost ...      # DPDK's net_vhost in testpmd (the peer)

Data path (content verified, both directions):
  frames.pcap --net_pcap0 rx--> testpmd io fwd --virtio-user TX--> backend (loopback)
  out.pcap   <--net_pcap0 tx--  testpmd io fwd <--virtio-user RX--  backend
Each frame carries its queue, a sequence number and a seeded random payload of
random length (60..1514, up to --max-len with mrg_rxbuf); after the run every
frame must have come back exactly once, byte for byte, in order per queue. The
number of frames per queue stays below the ring size, so nothing is dropped
whatever the scheduling. The test asserts: the features the driver set (IN_ORDER
always, RING_PACKED iff --packed 1, MRG_RXBUF iff --mrg-rxbuf 1, MQ iff --queues 2),
for vdm also the daemon's own log lines, virtio-user TX == RX == N frames and
bytes, no drops, and the backend's counters (vdm: its stats on SIGTERM; DPDK:
testpmd's port stats).

Exit 0 pass, 1 fail, 77 skip (no DPDK / no usable memory). python3 stdlib only.
"""

import argparse
import os
import random
import re
import shutil
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dpdkenv  # noqa: E402
from dpdkenv import log  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../.."))
MAGIC = b"VDMT"
ETH_HDR = bytes([0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02, 0x88, 0xb5])  # local exp. ethertype


# ---------------------------------------------------------------------------
# pcap files
def frame(seed, q, i, rnd):
    ln = rnd.choice((60, 61, 64, 128, 1514)) if i % 7 == 0 else rnd.randint(60, 1514)
    return frame_len(seed, q, i, ln)


def frame_len(seed, q, i, ln):
    r = random.Random((seed << 32) ^ (q << 24) ^ i)
    hdr = ETH_HDR + MAGIC + struct.pack(">BIH", q, i, ln)
    return hdr + r.randbytes(ln - len(hdr))


def gen_frames(seed, q, n, max_len):
    rnd = random.Random(seed * 1000 + q)
    out = []
    for i in range(n):
        if max_len > 1514 and i % 5 == 2:
            ln = rnd.randint(1515, max_len)
            out.append(frame_len(seed, q, i, ln))
        else:
            out.append(frame(seed, q, i, rnd))
    return out


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 65535, 1))
        for i, d in enumerate(frames):
            f.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(d), len(d)))
            f.write(d)


def read_pcap(path):
    out = []
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return out
    magic = struct.unpack("<I", data[:4])[0]
    e = "<" if magic in (0xa1b2c3d4, 0xa1b23c4d) else ">"
    off = 24
    while off + 16 <= len(data):
        _, _, incl, orig = struct.unpack(e + "IIII", data[off:off + 16])
        off += 16
        out.append(data[off:off + incl])
        off += incl
    return out


def check_frames(sent, got_per_q):
    """sent: {q: [frames]}; got_per_q: {q: [frames]}. Every frame back exactly once,
    intact, and in order per (source queue, receiving queue). Returns [errors]."""
    errs = []
    want = {}
    for q, fr in sent.items():
        for i, d in enumerate(fr):
            want[(q, i)] = d
    seen = set()
    for rq, frames in got_per_q.items():
        last = {}
        for k, d in enumerate(frames):
            if len(d) < 25 or d[14:18] != MAGIC:
                errs.append("rx queue %d frame #%d: not ours (%d bytes: %s)" % (rq, k, len(d), d[:32].hex()))
                continue
            q, i, ln = struct.unpack(">BIH", d[18:25])
            key = (q, i)
            if key not in want:
                errs.append("rx queue %d frame #%d: unknown id q%d/%d" % (rq, k, q, i))
            elif d != want[key]:
                w = want[key]
                at = next((j for j in range(min(len(d), len(w))) if d[j] != w[j]), min(len(d), len(w)))
                errs.append("rx queue %d frame #%d (q%d/%d): contents differ (len %d, want %d, first "
                            "difference at byte %d)" % (rq, k, q, i, len(d), len(w), at))
            elif key in seen:
                errs.append("rx queue %d frame #%d (q%d/%d): duplicate" % (rq, k, q, i))
            if q in last and i <= last[q]:
                errs.append("rx queue %d frame #%d (q%d/%d): out of order after %d" % (rq, k, q, i, last[q]))
            last[q] = i
            seen.add(key)
            if len(errs) > 20:
                return errs
    missing = sorted(set(want) - seen)
    if missing:
        errs.append("%d frames never came back, first: %s" % (
            len(missing), ", ".join("q%d/%d" % k for k in missing[:8])))
    return errs


# ---------------------------------------------------------------------------
def parse_vdm_stats(text):
    """Loose parse of the daemon's stats lines: sums of numbers after 'drop' words."""
    drops = 0
    lines = [l for l in text.splitlines() if "vdm-vhost-user-net" in l and
             re.search(r"(frames|bytes|drop)", l, re.I) and "negotiated" not in l]
    for l in lines:
        for m in re.finditer(r"drop\w*[ =:]+(\d+)|(\d+) drop", l, re.I):
            drops += int(m.group(1) or m.group(2))
    return lines, drops


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backend", choices=("vdm", "dpdk-vhost"), default="vdm")
    ap.add_argument("--daemon", default=os.path.join(ROOT, "build/contrib/vhost-user-net/vdm-vhost-user-net"))
    ap.add_argument("--packed", type=int, choices=(0, 1), default=0)
    ap.add_argument("--mrg-rxbuf", type=int, choices=(0, 1), default=1)
    ap.add_argument("--in-order", type=int, choices=(0, 1), default=1)
    ap.add_argument("--queues", type=int, choices=(1, 2), default=1)
    ap.add_argument("--frames", type=int, default=0, help="frames per queue (default: ring size - 64)")
    ap.add_argument("--queue-size", type=int, default=1024, help="virtio-user queue_size")
    ap.add_argument("--max-len", type=int, default=1514,
                    help="largest frame (> 1514: jumbo frames, only with --mrg-rxbuf 1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory", choices=("auto", "huge", "nohuge"), default="auto")
    ap.add_argument("--timeout", type=float, default=60.0, help="bound for the whole run")
    ap.add_argument("--daemon-arg", action="append", default=[])
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (logs, pcaps)")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    if args.max_len > 1514 and not args.mrg_rxbuf:
        ap.error("--max-len > 1514 needs --mrg-rxbuf 1")
    if args.max_len > 1514:
        log("warning: jumbo frames: DPDK 22.11's net_pcap port refuses --max-pkt-len here "
            "('Fail to configure port 0'): expect a stall")
    if not args.frames:
        args.frames = args.queue_size - 64
    if args.frames > args.queue_size - 32:
        log("warning: %d frames per queue with queue_size %d: drops possible under load" % (
            args.frames, args.queue_size))

    dpdkenv.install_exit_handlers()
    t0 = time.monotonic()
    deadline = t0 + args.timeout
    if args.backend == "vdm" and not os.access(args.daemon, os.X_OK):
        print("FAIL: no daemon at %s" % args.daemon)
        return 1
    try:
        testpmd = dpdkenv.ensure_testpmd()
        mem = dpdkenv.choose_memory(args.memory)
    except dpdkenv.Skip as e:
        print("SKIP: %s" % e)
        return 77

    seed = args.seed or random.randrange(1, 1 << 20)
    mode = "%s packed=%d in_order=%d mrg_rxbuf=%d queues=%d" % (
        args.backend, args.packed, args.in_order, args.mrg_rxbuf, args.queues)
    log("%s, %d frames/queue, seed %d, memory %s" % (mode, args.frames, seed, mem))
    tmp = tempfile.mkdtemp(prefix="vdm-dpdk-")
    tag = "vdm%d" % os.getpid()
    sock = os.path.join(tmp, "net.sock")
    backend = vu = None
    errors = []
    notes = []
    try:
        sent = {}
        for q in range(args.queues):
            sent[q] = gen_frames(seed, q, args.frames, args.max_len)
            write_pcap(os.path.join(tmp, "in%d.pcap" % q), sent[q])
        total_frames = sum(len(v) for v in sent.values())
        total_bytes = sum(len(d) for v in sent.values() for d in v)

        # -- backend
        blog = os.path.join(tmp, "backend.log")
        if args.backend == "vdm":
            backend = dpdkenv.vdm_daemon(args.daemon, sock, args.queues, blog,
                                         in_order=True, cpu=None, extra=args.daemon_arg,
                                         queue_size=args.queue_size)
        else:
            backend = dpdkenv.vhost_testpmd(testpmd, sock, args.queues, mem, blog, tag + "b",
                                            fwd_lcore=1)
            # vhost's config log says what it negotiated
            backend.argv  # noqa
        if args.backend == "dpdk-vhost":
            backend.wait_prompt(max(5, deadline - time.monotonic()))
            backend.cmd("set fwd io retry")
            backend.cmd("start")
        if not dpdkenv.wait_socket(sock, backend, max(1, min(20, deadline - time.monotonic()))):
            raise RuntimeError("backend did not create %s" % sock)

        # -- virtio-user driver
        pcap = "net_pcap0," + ",".join("rx_pcap=%s" % os.path.join(tmp, "in%d.pcap" % q)
                                       for q in range(args.queues))
        pcap += "," + ",".join("tx_pcap=%s" % os.path.join(tmp, "out%d.pcap" % q)
                               for q in range(args.queues))
        vdev = dpdkenv.virtio_user_vdev(sock, args.queues, args.packed, args.in_order,
                                        args.mrg_rxbuf, args.queue_size)
        eal = dpdkenv.eal_mem_args(mem, tag + "v", virtio_user=True) + \
            ["--log-level=pmd.net.virtio.*:debug", "--vdev", pcap, "--vdev", vdev]
        pmd = ["--nb-cores=1", "--total-num-mbufs=16384", "--forward-mode=io",
               "--no-flush-rx", "--rxq=%d" % args.queues, "--txq=%d" % args.queues,
               "--rxd=%d" % args.queue_size, "--txd=%d" % args.queue_size]
        if args.max_len > 1514:
            pmd += ["--max-pkt-len=%d" % (args.max_len + 4),
                    "--tx-offloads=0x8000"]  # MULTI_SEGS
        vlog = os.path.join(tmp, "virtio-user.log")
        vu = dpdkenv.Testpmd(testpmd, eal, pmd, vlog, fwd_lcore=0, name="virtio-user-testpmd")
        vu.wait_prompt(max(5, deadline - time.monotonic()))
        if "Start ports failed" in vu.text() or "Fail to configure port" in vu.text():
            raise RuntimeError("virtio-user testpmd could not start its ports (see %s)" % vlog)
        vu.cmd("set fwd io retry")
        vu.cmd("start")

        # -- wait until every frame came back (or nothing moves for 5 s)
        last, last_change = None, time.monotonic()
        while True:
            st = vu.port_stats(1)
            cur = (st["rx"], st["tx"])
            if cur != last:
                last, last_change = cur, time.monotonic()
            if st["rx"] >= total_frames:
                break
            now = time.monotonic()
            if now - last_change > 5 or now > deadline - 8:
                errors.append("stalled: virtio-user TX %d RX %d of %d frames" % (st["tx"], st["rx"], total_frames))
                break
            if not backend.alive():
                errors.append("backend exited (status %s)" % backend.proc.returncode)
                break
            time.sleep(0.1)
        time.sleep(0.2)  # anything extra (duplicates) would arrive now
        fwd = vu.cmd("stop")
        vstats = {p: vu.port_stats(p) for p in (0, 1)}
        vrc = vu.quit()
        if vrc != 0:
            errors.append("virtio-user testpmd exited with status %s" % vrc)
        vtext = vu.text()

        # -- backend's view
        if args.backend == "vdm":
            brc = backend.stop()
            btext = backend.text()
            if brc != 0:
                errors.append("vdm daemon exited with status %s on SIGTERM" % brc)
            feats = dpdkenv.vdm_features(btext)
            flags = dpdkenv.vdm_flag_lines(btext)
            slines, drops = parse_vdm_stats(btext)
            notes += ["vdm stats: " + l.strip() for l in slines[-8:]]
            if feats is None:
                errors.append("vdm log has no 'negotiated features' line")
            want_flags = {"VIRTIO_F_IN_ORDER": bool(args.in_order),
                          "VIRTIO_F_RING_PACKED": bool(args.packed),
                          "VIRTIO_NET_F_MRG_RXBUF": bool(args.mrg_rxbuf)}
            for k, v in want_flags.items():
                if k not in flags:
                    errors.append("vdm log does not say whether %s was negotiated" % k)
                elif flags[k] != v:
                    errors.append("vdm: %s %snegotiated, expected %s" % (k, "" if flags[k] else "NOT ", v))
            if drops:
                errors.append("vdm reports %d drops" % drops)
        else:
            bstats = backend.port_stats(0)
            backend.cmd("stop")
            brc = backend.quit()
            btext = backend.text()
            feats = dpdkenv.vhost_features(btext)
            notes.append("DPDK vhost port: RX %d TX %d frames (%d/%d bytes)" % (
                bstats["rx"], bstats["tx"], bstats["rx_bytes"], bstats["tx_bytes"]))
            if bstats["rx"] != total_frames or bstats["tx"] != total_frames:
                errors.append("DPDK vhost counted RX %d TX %d, sent %d" % (bstats["rx"], bstats["tx"], total_frames))
        drv = dpdkenv.virtio_user_features(vtext)

        # -- features
        def want_bits(f, who):
            if f is None:
                errors.append("%s: negotiated features not found in its log" % who)
                return
            exp = {dpdkenv.F_IN_ORDER: args.in_order, dpdkenv.F_RING_PACKED: args.packed,
                   dpdkenv.F_MRG_RXBUF: args.mrg_rxbuf, dpdkenv.F_MQ: args.queues > 1}
            for bit, on in exp.items():
                if bool(f >> bit & 1) != bool(on):
                    errors.append("%s: %s %s negotiated (features 0x%x)" % (
                        who, dpdkenv.VIRTIO_NET_BITS[bit], "not" if on else "unexpectedly", f))
        want_bits(drv, "virtio-user")
        want_bits(feats, args.backend)

        # -- counts and contents
        s0, s1 = vstats[0], vstats[1]
        if s1["tx"] != total_frames or s1["rx"] != total_frames:
            errors.append("virtio-user port: TX %d RX %d frames, sent %d" % (s1["tx"], s1["rx"], total_frames))
        if s1["tx_bytes"] != total_bytes or s1["rx_bytes"] != total_bytes:
            errors.append("virtio-user port: TX %d RX %d bytes, sent %d" % (s1["tx_bytes"], s1["rx_bytes"], total_bytes))
        if s0["rx"] != total_frames or s0["tx"] != total_frames:
            errors.append("pcap port: read %d frames, wrote %d, of %d" % (s0["rx"], s0["tx"], total_frames))
        for k in ("rx_missed", "rx_errors", "tx_errors", "nombuf"):
            if s1[k]:
                errors.append("virtio-user port: %s = %d" % (k, s1[k]))
        m = re.findall(r"TX-dropped:\s*(\d+)", fwd)
        if any(int(x) for x in m):
            errors.append("testpmd forward stats show drops: %s" % m)
        got = {q: read_pcap(os.path.join(tmp, "out%d.pcap" % q)) for q in range(args.queues)}
        errors += check_frames(sent, got)
        per_q = " ".join("q%d:%d" % (q, len(v)) for q, v in got.items())
        feat_txt = "0x%x (%s)" % (drv, dpdkenv.feature_names(drv)) if drv is not None else "?"
        summary = ["mode: %s, memory %s, seed %d" % (mode, mem, seed),
                   "driver features: %s" % feat_txt,
                   "%s features: %s" % (args.backend, "0x%x (%s)" % (feats, dpdkenv.feature_names(feats))
                                        if feats is not None else "?"),
                   "frames: %d sent, %d bytes; back per queue %s; virtio-user TX %d/%d B RX %d/%d B" % (
                       total_frames, total_bytes, per_q, s1["tx"], s1["tx_bytes"], s1["rx"], s1["rx_bytes"])]
        for l in summary + notes:
            print("  " + l)
    except RuntimeError as e:
        errors.append(str(e))
    finally:
        if vu:
            vu.kill()
        if backend:
            backend.kill()
        dpdkenv.kill_all()
        if mem == "huge":
            dpdkenv.clean_hugepages(tag)
    dt = time.monotonic() - t0
    if errors:
        for e in errors:
            print("  error: " + e)
        print("FAIL: %s (%.1f s), logs in %s" % (mode, dt, tmp))
        return 1
    print("PASS: %s (%.1f s)" % (mode, dt))
    if args.keep:
        print("  kept %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
