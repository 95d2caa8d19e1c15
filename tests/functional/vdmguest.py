"""Shared pieces of vdm's Linux-guest tests (boot-vhost-user-blk.py, boot-vhost-user-scsi.py,
boot-vhost-user-net.py): the disk pattern guest/init writes, child processes that die with
the test, QMP queries, the guest build, the QEMU command line and the console follower.
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

    def close(self):
        self.log.close()


# ---------------------------------------------------------------------------
# Options, checks and the end of a run, the same for every disk guest test.
def add_guest_args(ap):
    """The options every guest test has (the guest, QEMU, timeouts, logs)."""
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


def guest_problems(result, timed_out, stalled, args, qemu_rc, backend_died, backend_rc, image, features):
    """What went wrong in a disk guest run: (list of reasons, host check message). Checks the
    guest's result line, that the backend lived and left cleanly on SIGTERM (a sanitizer report
    at exit makes its status non-zero), the image against the pattern, and RING_PACKED."""
    why = []
    if result is None:
        why.append("no VDM-GUEST-RESULT line (%s)" % (
            "timeout %ds" % args.timeout if timed_out else
            "guest silent for %ds: I/O stalled" % args.stall_timeout if stalled else
            "QEMU exited %s" % qemu_rc))
    elif result.split()[1] != "PASS":
        why.append("guest: " + result)
    if backend_died is not None:
        why.append("backend died during the run (status %s)" % backend_died)
    elif backend_rc not in (0, -signal.SIGTERM):
        why.append("backend exit status %s after SIGTERM%s" % (
            backend_rc, " (did not exit within 5 s: SIGKILLed)" if backend_rc == -signal.SIGKILL else ""))
    host_msg = "not run"
    m = re.search(r"regions=(\S+)", result or "")
    if m:
        hok, host_msg = host_verify(image, parse_regions(m.group(1)))
        if not hok:
            why.append("host check: " + host_msg)
        host_msg = ("PASS " if hok else "FAIL ") + host_msg
    packed_seen = None
    for fl in features:
        pm = re.search(r"RING_PACKED=(\d)", fl)
        if pm:
            packed_seen = pm.group(1) == "1"
    if args.expect_packed != "any" and packed_seen is not (args.expect_packed == "on"):
        why.append("guest RING_PACKED=%s, expected %s" % (packed_seen, args.expect_packed))
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
