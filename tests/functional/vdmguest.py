"""Shared pieces of vdm's Linux-guest tests (boot-vhost-user-blk.py, boot-vhost-user-scsi.py,
boot-vhost-user-net.py): the disk pattern guest/init writes, child processes that die with
the test, the daemon under test, QMP queries and their summary, the guest build, the QEMU
command line, the console follower, and the checks and summary every run ends with.
python3 standard library only.
"""

import ctypes
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MIB = 1 << 20


# Transport feature bits (spec 6) by name, for the guest's negotiated-feature lines; each test
# adds its device's bits.
TRANSPORT_FEATURE_NAMES = {
    24: "NOTIFY_ON_EMPTY", 27: "ANY_LAYOUT", 28: "INDIRECT_DESC", 29: "EVENT_IDX",
    30: "BAD_FEATURE/PROTOCOL_FEATURES", 32: "VERSION_1", 33: "ACCESS_PLATFORM",
    34: "RING_PACKED", 35: "IN_ORDER", 36: "ORDER_PLATFORM", 37: "SR_IOV",
    38: "NOTIFICATION_DATA", 39: "NOTIF_CONFIG_DATA", 40: "RING_RESET",
}


# ---------------------------------------------------------------------------
# The pattern: the same bytes as guest/init's gen() (busybox awk).
def pattern_sector(seed, region, i):
    f = "seed=%d region=%d " % (seed, region)
    while len(f) < 511:
        f = f + f
    h = "vdm-pattern sector=%d seed=%d region=%d |" % (i, seed, region)
    return (h + f[:511 - len(h)]).encode() + b"\n"


def pattern(seed, region, nsect):
    return b"".join(pattern_sector(seed, region, i) for i in range(nsect))


def parse_regions(text):
    """'OFF:LEN:SEED,...' (MiB, MiB, seed) -> [(off, len, seed)]"""
    out = []
    for item in text.split(","):
        off, ln, seed = (int(x) for x in item.split(":"))
        out.append((off, ln, seed))
    return out


def host_verify(image, regions):
    """Compare the image's regions with the generator. Returns (ok, message)."""
    with open(image, "rb") as f:
        for r, (off, ln, seed) in enumerate(regions):
            want = pattern(seed, r, ln * 2048)
            f.seek(off * MIB)
            got = f.read(ln * MIB)
            if got != want:
                for s in range(ln * 2048):
                    a, b = got[s * 512:(s + 1) * 512], want[s * 512:(s + 1) * 512]
                    if a != b:
                        return False, ("region %d (offset %d MiB, seed %d): sector %d differs: %r"
                                       % (r, off, seed, s, a[:60]))
                return False, "region %d: short read" % r
    return True, "%d regions, %d MiB" % (len(regions), sum(ln for _, ln, _ in regions))


# ---------------------------------------------------------------------------
# Children die with us (PR_SET_PDEATHSIG) and are killed on every exit path.
_libc = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Child:
    def __init__(self, name, argv, log_path, **kw):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=kw.pop("stdout", self.log), stderr=self.log,
                                     preexec_fn=_child_setup, **kw)

    def alive(self):
        return self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, grace=5.0):
        """SIGTERM, then SIGKILL after `grace` seconds. Returns the exit status."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()
        self.log.close()
        return self.proc.returncode


def start_daemon(name, argv, sock, log_path, timeout=15.0):
    """Start a vhost-user backend and wait until it listens on @sock (a stale socket file
    is removed first). Raises RuntimeError with the log's tail when it does not."""
    if os.path.exists(sock):
        os.unlink(sock)
    child = Child(name, argv, log_path)
    if not wait_socket(sock, child, timeout):
        child.stop(1.0)
        raise RuntimeError("%s did not create %s (exit %s); log:\n%s"
                           % (name, sock, child.proc.poll(), open(log_path, errors="replace").read()[-3000:]))
    return child


def daemon_path(args, name):
    """args.daemon, or vdm's build of contrib/NAME/vdm-NAME in this source tree; False (after
    printing SKIP) when it is not there."""
    if not args.daemon:
        args.daemon = os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "contrib", name,
                                   "vdm-" + name)
    args.daemon = os.path.abspath(args.daemon)
    if not os.access(args.daemon, os.X_OK):
        print("SKIP: daemon %s is not there" % args.daemon)
        return False
    return True


def exit_on_signals():
    """SIGTERM and SIGHUP (meson's timeout, a closed terminal) end the run through its
    finally: clauses, which kill the children and print the summary."""
    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)


def disk_image(args, tmp):
    """--image, or a sparse --image-size MiB file in @tmp; created when missing."""
    image = os.path.abspath(args.image) if args.image else os.path.join(tmp, "disk.img")
    if not os.path.exists(image):
        with open(image, "wb") as f:
            f.truncate(args.image_size * MIB)
    return image


def wait_socket(path, child, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # Listening once the socket file is there; do not connect (a
        # one-connection backend would take us for the VMM).
        if os.path.exists(path):
            return True
        if not child.alive():
            return False
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------------------
def qmp_query(path, commands, timeout=10.0):
    """Run QMP commands, return their 'return' values (or {'error': ...})."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    f = s.makefile("rw")

    def recv():
        while True:
            line = f.readline()
            if not line:
                raise EOFError("QMP closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    recv()  # greeting
    out = []
    for cmd in [{"execute": "qmp_capabilities"}] + commands:
        f.write(json.dumps(cmd) + "\n")
        f.flush()
        msg = recv()
        out.append(msg.get("return", msg))
    s.close()
    return out[1:]


def query_virtio_status(qmp_sock, dev_id, tmp):
    """x-query-virtio and x-query-virtio-status of -device @dev_id, saved to virtio-status.json;
    [virtio list, status] or [None, {'error': ...}] (diagnostics only: never raises)."""
    try:
        out = qmp_query(qmp_sock, [
            {"execute": "x-query-virtio"},
            {"execute": "x-query-virtio-status",
             "arguments": {"path": "/machine/peripheral/%s/virtio-backend" % dev_id}}])
        with open(os.path.join(tmp, "virtio-status.json"), "w") as f:
            json.dump(out, f, indent=1)
        return out
    except Exception as e:
        return [None, {"error": str(e)}]


def describe_virtio_status(st, device_prefix):
    """x-query-virtio-status (QEMU 7.2) -> short lines. Features there are decoded into lists
    of strings like 'VIRTIO_F_VERSION_1: ...'; @device_prefix ('VIRTIO_BLK_F_') is cut off."""
    def names(fs):
        if not isinstance(fs, dict):
            return str(fs)
        items = []
        for key in ("transports", "dev-features"):
            for t in fs.get(key, []):
                items.append(t.split(":")[0].replace(device_prefix, "").replace("VIRTIO_RING_F_", "")
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


def virtio_status_summary(vstatus, device_prefix):
    """Summary lines for what query_virtio_status returned (nothing when it was not run)."""
    if not vstatus or len(vstatus) < 2:
        return []
    st = vstatus[1]
    if isinstance(st, dict) and "error" not in st:
        return ["qemu  " + ln for ln in describe_virtio_status(st, device_prefix)]
    return ["qemu  x-query-virtio-status: %s" % st]


# ---------------------------------------------------------------------------
def build_guest(guest_dir, timeout):
    script = os.path.join(HERE, "guest", "build-guest.sh")
    t0 = time.monotonic()
    try:
        r = subprocess.run([script, guest_dir], timeout=timeout, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except subprocess.TimeoutExpired:
        print("guest build timed out after %ds" % timeout)
        return None
    if r.returncode != 0:
        sys.stdout.write(r.stdout.decode(errors="replace")[-4000:])
        print("guest build failed (exit %d)" % r.returncode)
        return None
    env = {}
    with open(os.path.join(guest_dir, "guest.env")) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            env[k] = v
    env["build_secs"] = time.monotonic() - t0
    return env




# ---------------------------------------------------------------------------
def qemu_argv(qemu, guest_dir, kernel_format, machine, append, devices):
    """QEMU 7.2 under TCG booting the guest with 512 MiB of shared memfd memory
    (vhost-user needs share=on), qboot (SeaBIOS would drive virtio disks itself and
    hang on a silent backend) and the console on stdout; @devices: more arguments."""
    kernel = os.path.join(guest_dir, "vmlinux")
    if kernel_format == "bzimage" or not os.path.exists(kernel):
        kernel = os.path.join(guest_dir, "vmlinuz")
    return [qemu, "-accel", "tcg", "-m", "512M",
            "-object", "memory-backend-memfd,id=mem,size=512M,share=on",
            "-machine", "%s,memory-backend=mem" % machine,
            "-bios", "/usr/share/qemu/qboot.rom",
            "-nodefaults", "-nographic", "-serial", "stdio", "-no-reboot",
            "-kernel", kernel,
            "-initrd", os.path.join(guest_dir, "initramfs.gz"),
            "-append", append] + list(devices)


class Console:
    """QEMU's serial console (its stdout), read on a thread, logged with timestamps.
    next() returns (timestamp, line) with the line starting at a VDM-GUEST- marker
    when it has one, (timestamp, None) when QEMU closed it, or None on timeout."""

    def __init__(self, proc, log_path, t0, verbose=False):
        self.t0, self.verbose = t0, verbose
        self.log = open(log_path, "w")
        self.lines = queue.Queue()
        self.last = time.monotonic()

        def reader():
            for raw in proc.stdout:
                self.lines.put((time.monotonic(), raw.decode(errors="replace").rstrip("\r\n")))
            self.lines.put((time.monotonic(), None))
        threading.Thread(target=reader, daemon=True).start()

    def next(self, timeout):
        try:
            ts, line = self.lines.get(timeout=max(0.05, timeout))
        except queue.Empty:
            return None
        self.last = ts
        if line is None:
            return ts, None
        self.log.write("[%7.3f] %s\n" % (ts - self.t0, line))
        self.log.flush()
        if self.verbose:
            print("[%7.3f] %s" % (ts - self.t0, line))
            sys.stdout.flush()
        at = line.find("VDM-GUEST-")  # a kernel message may share the serial line
        return ts, line[at:] if at > 0 else line

    def note(self, text):
        """A host event, logged among the console lines."""
        self.log.write("[%7.3f] HOST: %s\n" % (time.monotonic() - self.t0, text))
        self.log.flush()

    def close(self):
        self.log.close()


def follow_console(console, deadline, stall_timeout, on_line):
    """Feed the guest's console lines to on_line(ts, line) until it returns True (the result),
    QEMU closes the console, the deadline passes, or the booted guest is silent for
    @stall_timeout seconds. Returns (timed_out, stalled, time the guest booted or None)."""
    t_booted = None
    while True:
        got = console.next(min(1.0, deadline - time.monotonic()))
        now = time.monotonic()
        if got is None:
            if now >= deadline:
                return True, False, t_booted
            if t_booted is not None and now - console.last > stall_timeout:
                return False, True, t_booted
            continue
        ts, line = got
        if line is None:
            return False, False, t_booted
        if line.startswith("VDM-GUEST-BOOTED"):
            t_booted = ts
        if on_line(ts, line):
            return False, False, t_booted


def stop_qemu(qemu, result):
    """Let a guest that printed its result power off, then make sure QEMU is gone.
    Returns QEMU's exit status."""
    if result is not None:
        try:
            qemu.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
    return qemu.stop(3.0)


def feature_bits_text(bits, names):
    return ",".join("%d%s" % (b, "(" + names[b] + ")" if b in names else "") for b in bits)


def guest_feature_summary(features, names, flags=True):
    """Summary lines for the guest's VDM-GUEST-FEATURES lines: the bits it negotiated, by
    name from @names, and (@flags) the ring features it reports."""
    out = []
    for fl in features:
        bm = re.search(r"dev=(\S+) device=(\S+).* bits=(\S*)", fl)
        if bm:
            bits = [int(b) for b in bm.group(3).split(",") if b]
            out.append("guest %s device %s negotiated: %s" % (bm.group(1), bm.group(2),
                                                              feature_bits_text(bits, names)))
            if flags:
                out.append("  %s" % " ".join(
                    re.findall(r"(RING_PACKED=\d|IN_ORDER=\d|EVENT_IDX=\d|INDIRECT_DESC=\d)", fl)))
    return out


def packed_seen(features):
    """Whether the guest negotiated RING_PACKED (its last FEATURES line), or None."""
    seen = None
    for fl in features:
        pm = re.search(r"RING_PACKED=(\d)", fl)
        if pm:
            seen = pm.group(1) == "1"
    return seen


# ---------------------------------------------------------------------------
# Options, checks and the end of a run, the same for every disk guest test.
def add_guest_args(ap, disk=True):
    """The options every guest test has (the guest, QEMU, timeouts, logs; the disk image
    when @disk)."""
    if disk:
        ap.add_argument("--image", help="disk image (created sparse, --image-size, when missing)")
        ap.add_argument("--image-size", type=int, default=64, metavar="MIB")
    ap.add_argument("--timeout", type=float, default=150.0, help="seconds for the whole guest run")
    ap.add_argument("--stall-timeout", type=float, default=45.0,
                    help="fail when the booted guest prints nothing for this many seconds")
    ap.add_argument("--build-timeout", type=float, default=1200.0)
    ap.add_argument("--guest-dir", default=os.environ.get("VDM_GUEST_DIR", "/var/tmp/vdm-guest"),
                    help="where build-guest.sh caches the kernel and initramfs")
    ap.add_argument("--kernel-format", choices=["pvh", "bzimage"], default="pvh",
                    help="pvh: boot the uncompressed vmlinux via PVH (fast under TCG); bzimage: vmlinuz")
    ap.add_argument("--machine", choices=["q35", "pc"], default="q35")
    ap.add_argument("--expect-packed", choices=["on", "off", "any"], default="any",
                    help="fail unless the guest negotiated RING_PACKED as stated")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--qemu-arg", action="append", metavar="ARG",
                    help="extra QEMU argument (repeatable), e.g. --qemu-arg=-trace --qemu-arg=vhost_user_*")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo the guest console")


def guest_problems(result, timed_out, stalled, args, qemu_rc, backend_died, backend_rc, image, features,
                   who="backend"):
    """What went wrong in a guest run: (list of reasons, host check message). Checks the
    guest's result line, that the backend (@who) lived and left cleanly on SIGTERM (a sanitizer
    report at exit makes its status non-zero), the image against the pattern (disk tests;
    @image None: no disk), and RING_PACKED."""
    why = []
    if result is None:
        why.append("no VDM-GUEST-RESULT line (%s)" % (
            "timeout %ds" % args.timeout if timed_out else
            "guest silent for %ds: I/O stalled" % args.stall_timeout if stalled else
            "QEMU exited %s" % qemu_rc))
    elif result.split()[1] != "PASS":
        why.append("guest: " + result)
    if backend_died is not None:
        why.append("%s died during the run (status %s)" % (who, backend_died))
    elif backend_rc not in (0, -signal.SIGTERM):
        why.append("%s exit status %s after SIGTERM%s" % (
            who, backend_rc, " (did not exit within 5 s: SIGKILLed)" if backend_rc == -signal.SIGKILL else ""))
    host_msg = "not run"
    m = re.search(r"regions=(\S+)", result or "")
    if m and image:
        hok, host_msg = host_verify(image, parse_regions(m.group(1)))
        if not hok:
            why.append("host check: " + host_msg)
        host_msg = ("PASS " if hok else "FAIL ") + host_msg
    seen = packed_seen(features)
    if args.expect_packed != "any" and seen is not (args.expect_packed == "on"):
        why.append("guest RING_PACKED=%s, expected %s" % (seen, args.expect_packed))
    return why, host_msg


def failure_details(tmp, verbose):
    """Summary lines pointing at the logs, with the console's tail."""
    out = ["logs: %s (console.log, qemu.log, backend.log)" % tmp]
    if not verbose:
        try:
            tail = open(os.path.join(tmp, "console.log"), errors="replace").read().splitlines()[-25:]
            out.append("console tail:")
            out += ["  " + t for t in tail]
        except OSError:
            pass
    return out


def finish_run(children, summary, tmp, keep):
    """Kill what still runs, print the summary, keep or remove the temporary directory."""
    for c in reversed(children):
        try:
            if c.alive():
                c.proc.kill()
                c.proc.wait(5)
        except Exception:
            pass
    print("\n".join(summary))
    if keep:
        print("kept %s" % tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def backend_log(path, keep):
    """The backend's log lines, and summary lines ("daemon: ...") for those matching the regular
    expression @keep (case-insensitive; None: none), each once."""
    try:
        lines = open(path, errors="replace").read().strip().splitlines()
    except OSError:
        lines = []
    out, seen = [], set()
    for ln in lines:
        if keep and ln not in seen and re.search(keep, ln, re.I):
            seen.add(ln)
            out.append("daemon: " + ln)
    return lines, out


def harness_failure(e, summary, args):
    """The summary's end when the run was interrupted (@e: KeyboardInterrupt, or SystemExit
    from exit_on_signals) or the harness itself failed (any other exception; the logs are kept).
    Returns the exit status."""
    if isinstance(e, KeyboardInterrupt):
        summary.append("RESULT: FAIL (interrupted: KeyboardInterrupt)")
    elif isinstance(e, SystemExit):
        summary.append("RESULT: FAIL (interrupted: %s)" % (
            "signal %d" % (e.code - 128) if isinstance(e.code, int) and e.code > 128 else "SystemExit"))
    else:
        summary.append("FAIL: harness error: %s" % e)
        summary.append("RESULT: FAIL")
        args.keep = True
    return 1


def end_summary(summary, why, backend_lines, times, backend_rc, tmp, args):
    """The last summary lines: the backend's log tail on failure, the timings (@times: monotonic
    start, guest built, QEMU started, guest booted, result, end; None when not reached), the logs,
    every reason to fail and RESULT. Keeps the logs on failure. Returns the exit status."""
    t_start, t_built, t_qemu, t_booted, t_result, t_end = times
    if why:
        summary += ["backend: " + ln for ln in backend_lines[-15:]]
    summary.append("time: guest build/cache %.1fs; QEMU start -> init %s, -> result %s, -> exit %.1fs; "
                   "total %.1fs; backend exit %s"
                   % (t_built - t_start,
                      "%.1fs" % (t_booted - t_qemu) if t_booted else "-",
                      "%.1fs" % (t_result - t_qemu) if t_result else "-",
                      t_end - t_qemu, time.monotonic() - t_start, backend_rc))
    if why:
        summary += failure_details(tmp, args.verbose)
        args.keep = True
    summary += ["FAIL: " + w for w in why]
    summary.append("RESULT: %s" % ("FAIL" if why else "PASS"))
    return 1 if why else 0
