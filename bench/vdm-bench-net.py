#!/usr/bin/env python3
"""vdm-bench-net: 64-byte frames through vhost-user-net, vdm's daemon in loopback
against DPDK's vhost PMD (testpmd io forwarding, port looped to itself), both
driven by the same DPDK virtio-user testpmd, same run, one core per side.

Method: closed loop. The virtio-user testpmd (io forwarding, its one port looped
to itself, forwarding lcore 0) injects `start tx_first N` (N bursts of 32 frames
of --pkt-len bytes, made by txonly); from then on every frame the backend gives
back on RX is sent again on TX. The backend (vdm pinned to CPU 1, or DPDK vhost's
forwarding lcore 1) returns every TX frame on RX. After --warmup seconds the
virtio-user port's RX counter is sampled twice, --seconds apart: Mpps is the frame
rate per direction (driver RX = what the backend returned). Points (mode x backend)
are interleaved in each repeat so drift on a shared machine hits both alike; the
median of the repeats is reported with min/max. One-way (txonly/rxonly) runs swing
10-48 Mpps here and are not used.

Modes: ring split|packed x in_order 0|1 x mrg_rxbuf 0|1 (driver side; vdm offers
IN_ORDER, DPDK's vhost always does).

Output: one JSON object per (mode, backend) on stdout (and --json FILE), then a
table with the ratio vdm/DPDK per mode on stderr.
Exit 0, 1 (a point failed), 77 (no DPDK / memory here). python3 stdlib only.

  bench/vdm-bench-net.py [--vdm-daemon build/contrib/vhost-user-net/vdm-vhost-user-net]
      [--backends vdm,dpdk] [--modes split-io1-mrg0,...|all] [--seconds 3] [--repeat 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import shutil
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
sys.path.insert(0, os.path.join(ROOT, "tests/functional/dpdk"))
import dpdkenv  # noqa: E402
from dpdkenv import log  # noqa: E402

ALL_MODES = ["%s-io%d-mrg%d" % (r, i, m) for r in ("split", "packed") for i in (0, 1) for m in (0, 1)]


def parse_mode(s):
    r, io, mrg = s.split("-")
    assert r in ("split", "packed") and io in ("io0", "io1") and mrg in ("mrg0", "mrg1"), s
    return {"packed": int(r == "packed"), "in_order": int(io[-1]), "mrg_rxbuf": int(mrg[-1])}


def daemon_has(daemon, opt):
    try:
        r = subprocess.run([daemon, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=5)
        return opt in r.stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return False


def run_point(args, testpmd, mem, backend, mode, tmp, k):
    """One measurement. Returns dict (mpps, tx_mpps, features, ...) or raises RuntimeError."""
    tag = "vdmb%d%s%d" % (os.getpid(), backend[0], k)
    sock = os.path.join(tmp, "%s-%d.sock" % (backend, k))
    blog = os.path.join(tmp, "%s-%s-%d.log" % (backend, mode, k))
    vlog = os.path.join(tmp, "virtio-user-%s-%s-%d.log" % (backend, mode, k))
    m = parse_mode(mode)
    be = vu = None
    deadline = time.monotonic() + args.seconds + args.warmup + 40
    try:
        if backend == "vdm":
            extra = ["--busy-poll"] if args.busy_poll else []
            be = dpdkenv.vdm_daemon(args.vdm_daemon, sock, 1, blog, in_order=True, cpu=1,
                                    extra=extra + args.daemon_arg, queue_size=args.queue_size)
        else:
            be = dpdkenv.vhost_testpmd(testpmd, sock, 1, mem, blog, tag + "b", fwd_lcore=1)
            be.wait_prompt(20)
            be.cmd("start")
        if not dpdkenv.wait_socket(sock, be, 20):
            raise RuntimeError("%s did not create its socket" % backend)
        vdev = dpdkenv.virtio_user_vdev(sock, 1, m["packed"], m["in_order"], m["mrg_rxbuf"],
                                        args.queue_size)
        eal = dpdkenv.eal_mem_args(mem, tag + "v", virtio_user=True) + \
            ["--log-level=pmd.net.virtio.*:debug", "--vdev", vdev]
        pmd = ["--nb-cores=1", "--total-num-mbufs=16384", "--forward-mode=io",
               "--port-topology=loop", "--txpkts=%d" % args.pkt_len, "--burst=32"]
        vu = dpdkenv.Testpmd(testpmd, eal, pmd, vlog, fwd_lcore=0, name="virtio-user-testpmd")
        vu.wait_prompt(30)
        vu.cmd("start tx_first %d" % args.tx_first)
        time.sleep(args.warmup)
        s0 = vu.port_stats(0)
        time.sleep(args.seconds)
        s1 = vu.port_stats(0)
        if time.monotonic() > deadline:
            raise RuntimeError("took too long")
        dt = s1["t"] - s0["t"]
        res = {"mpps": (s1["rx"] - s0["rx"]) / dt / 1e6, "tx_mpps": (s1["tx"] - s0["tx"]) / dt / 1e6}
        vu.cmd("stop")
        vu.quit(10)
        res["features"] = dpdkenv.virtio_user_features(vu.text())
        if backend == "vdm":
            rc = be.stop()
            text = be.text()
            res["backend_features"] = dpdkenv.vdm_features(text)
            if rc != 0:
                raise RuntimeError("vdm daemon exited with status %s" % rc)
        else:
            be.cmd("stop")
            be.quit(10)
            res["backend_features"] = dpdkenv.vhost_features(be.text())
        if res["mpps"] <= 0:
            raise RuntimeError("no frames came back")
        return res
    finally:
        for c in (vu, be):
            if c:
                c.kill()
        if mem == "huge":
            dpdkenv.clean_hugepages(tag)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vdm-daemon", default=os.path.join(ROOT, "build/contrib/vhost-user-net/vdm-vhost-user-net"))
    ap.add_argument("--backends", default="vdm,dpdk")
    ap.add_argument("--modes", default="all", help="comma list of split|packed-io0|io1-mrg0|mrg1, or all")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pkt-len", type=int, default=64)
    ap.add_argument("--tx-first", type=int, default=32, help="bursts of 32 frames injected (loop population)")
    ap.add_argument("--queue-size", type=int, default=256)
    ap.add_argument("--busy-poll", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--memory", choices=("auto", "huge", "nohuge"), default="auto")
    ap.add_argument("--daemon-arg", action="append", default=[])
    ap.add_argument("--json", help="also write the JSON lines to this file")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    modes = ALL_MODES if args.modes == "all" else args.modes.split(",")
    for md in modes:
        parse_mode(md)

    dpdkenv.install_exit_handlers()
    try:
        testpmd = dpdkenv.ensure_testpmd()
        mem = dpdkenv.choose_memory(args.memory)
    except dpdkenv.Skip as e:
        print("SKIP: %s" % e, file=sys.stderr)
        return 77
    if "vdm" in backends and not os.access(args.vdm_daemon, os.X_OK):
        log("no vdm daemon at %s: running DPDK's vhost only" % args.vdm_daemon)
        backends.remove("vdm")
    if not backends:
        return 77
    if args.busy_poll == "auto":
        args.busy_poll = "vdm" in backends and daemon_has(args.vdm_daemon, "--busy-poll")
    else:
        args.busy_poll = args.busy_poll == "on"

    tmp = tempfile.mkdtemp(prefix="vdm-bench-net-")
    res = {(md, b): [] for md in modes for b in backends}
    info = {}
    errs = {}
    k = 0
    for rep in range(args.repeat):
        for md in modes:
            order = backends if (rep + modes.index(md)) % 2 == 0 else backends[::-1]
            for b in order:
                k += 1
                try:
                    r = run_point(args, testpmd, mem, b, md, tmp, k)
                    res[(md, b)].append(r["mpps"])
                    info[(md, b)] = r
                    log("[%d/%d] %-16s %-5s %6.2f Mpps (tx %.2f)" % (
                        rep + 1, args.repeat, md, b, r["mpps"], r["tx_mpps"]))
                except (RuntimeError, OSError) as e:
                    errs[(md, b)] = str(e).splitlines()[0][:300]
                    log("[%d/%d] %-16s %-5s FAILED: %s" % (rep + 1, args.repeat, md, b, errs[(md, b)]))

    jf = open(args.json, "w") if args.json else None
    table = []
    for md in modes:
        m = parse_mode(md)
        row = {"mode": md}
        for b in backends:
            runs = res[(md, b)]
            r = info.get((md, b), {})
            o = {"bench": "net", "backend": b, "ring": "packed" if m["packed"] else "split",
                 "in_order": bool(m["in_order"]), "mrg_rxbuf": bool(m["mrg_rxbuf"]),
                 "pkt_len": args.pkt_len, "queues": 1, "queue_size": args.queue_size,
                 "loop_frames": args.tx_first * 32, "seconds": args.seconds, "warmup": args.warmup,
                 "repeat": args.repeat, "memory": mem, "busy_poll": bool(args.busy_poll) if b == "vdm" else None,
                 "pin": {"driver": 0, "backend": 1},
                 "negotiated_features": "0x%x" % r["features"] if r.get("features") is not None else None,
                 "backend_features": "0x%x" % r["backend_features"] if r.get("backend_features") is not None else None,
                 "ok": bool(runs)}
            if runs:
                o.update({"mpps": round(statistics.median(runs), 3), "mpps_min": round(min(runs), 3),
                          "mpps_max": round(max(runs), 3), "mpps_runs": [round(x, 3) for x in runs]})
                row[b] = o["mpps"]
            if (md, b) in errs:
                o["error"] = errs[(md, b)]
            line = json.dumps(o)
            print(line, flush=True)
            if jf:
                jf.write(line + "\n")
        if "vdm" in row and "dpdk" in row:
            row["ratio"] = row["vdm"] / row["dpdk"]
        table.append(row)
    if jf:
        jf.close()

    w = sys.stderr
    w.write("\n64-byte frames, closed loop (%d frames), Mpps per direction, median of %d x %.1f s, memory %s%s\n" % (
        args.tx_first * 32, args.repeat, args.seconds, mem, ", vdm --busy-poll" if args.busy_poll else ""))
    w.write("%-16s %-32s %9s %9s %9s\n" % ("mode", "driver features", "dpdk", "vdm", "vdm/dpdk"))
    for row in table:
        r = info.get((row["mode"], "dpdk")) or info.get((row["mode"], "vdm")) or {}
        f = r.get("features")
        fs = dpdkenv.feature_names(f).replace("INDIRECT_DESC ", "").replace("VERSION_1", "V1") if f else "?"
        w.write("%-16s %-32s %9s %9s %9s\n" % (
            row["mode"], fs[:32],
            "%.2f" % row["dpdk"] if "dpdk" in row else "-",
            "%.2f" % row["vdm"] if "vdm" in row else "-",
            "%.2f" % row["ratio"] if "ratio" in row else "-"))
    if args.keep or errs:
        w.write("logs: %s\n" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
