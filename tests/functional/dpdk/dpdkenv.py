"""DPDK (Debian 12: 22.11) environment and testpmd runner for vdm's interop
tests and benchmark. python3 standard library only.

- ensure_testpmd(): `dpdk-testpmd` (Debian package dpdk-dev; the package dpdk has
  only scripts), installed with apt-get when missing (we run as root).
- Memory: hugepages (vm.nr_hugepages, hugetlbfs on /dev/hugepages) or --no-huge
  (memfd-backed, shareable with a vhost-user peer). eal_mem_args() gives the EAL
  options for one side.
- Testpmd: one testpmd process in interactive mode driven through stdin (commands
  written, output read up to the next prompt), in its own process group, killed
  with its group on every exit path (and by PR_SET_PDEATHSIG if we die).
- Two processes share the machine's two cores: each gets `-l 0,1` with the other
  process's forwarding core as its main lcore (the main lcore only waits on stdin),
  so forwarding runs on core 0 for one process and core 1 for the other.
"""

import ctypes
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

HUGE_DIR = "/dev/hugepages"
PAGE_KIB = 2048
MEM_MB = 512          # per process (-m)

_libc = ctypes.CDLL(None, use_errno=True)
_children = []


def log(*a):
    print("[dpdk]", *a, file=sys.stderr, flush=True)


def _child_setup():
    os.setsid()
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def kill_all():
    """Kill every child process group we started (idempotent)."""
    for c in list(_children):
        c.kill()


class Skip(Exception):
    """The environment can not run DPDK here: the caller exits 77."""


# ---------------------------------------------------------------------------
# Installation
def ensure_testpmd(install=True, timeout=900):
    path = shutil.which("dpdk-testpmd")
    if path:
        return path
    if not install:
        raise Skip("dpdk-testpmd not found (Debian package dpdk-dev)")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise Skip("dpdk-testpmd not found and can not apt-get install dpdk-dev here")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log("installing dpdk-dev (dpdk-testpmd) with apt-get")
    deadline = time.monotonic() + timeout
    for argv in (["apt-get", "update", "-qq"],
                 ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "dpdk-dev"]):
        try:
            r = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=max(10, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise Skip("%s timed out" % " ".join(argv))
        if r.returncode != 0:
            sys.stderr.write(r.stdout.decode(errors="replace")[-2000:])
            if argv[1] == "install":
                raise Skip("apt-get install dpdk-dev failed")
    path = shutil.which("dpdk-testpmd")
    if not path:
        raise Skip("dpdk-dev installed but no dpdk-testpmd in PATH")
    return path


# ---------------------------------------------------------------------------
# Memory
def _meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _hugetlbfs_mounted(path=HUGE_DIR):
    with open("/proc/mounts") as f:
        for line in f:
            p = line.split()
            if len(p) >= 3 and p[2] == "hugetlbfs" and os.path.realpath(p[1]) == os.path.realpath(path):
                return True
    return False


def clean_hugepages(prefix=None):
    """Remove DPDK's leftover page files (from killed runs) under /dev/hugepages."""
    if not os.path.isdir(HUGE_DIR):
        return
    pat = (prefix + "map_*") if prefix else "*map_*"
    for f in glob.glob(os.path.join(HUGE_DIR, pat)):
        try:
            os.unlink(f)
        except OSError:
            pass


def setup_hugepages(processes=2, mem_mb=MEM_MB):
    """Reserve 2 MiB hugepages for `processes` × `mem_mb` (+ slack) and mount
    hugetlbfs on /dev/hugepages. Returns None on success, else why not."""
    need = processes * mem_mb * 1024 // PAGE_KIB + 64
    try:
        if _meminfo("Hugepagesize") != PAGE_KIB:
            return "default hugepage size is %d kB, not 2048" % _meminfo("Hugepagesize")
        with open("/proc/sys/vm/nr_hugepages") as f:
            cur = int(f.read())
        free = _meminfo("HugePages_Free")
        if free < need:
            want = cur + (need - free)
            with open("/proc/sys/vm/nr_hugepages", "w") as f:
                f.write(str(want))
        if _meminfo("HugePages_Free") < need:
            clean_hugepages("vdm")
        if _meminfo("HugePages_Free") < need:
            return "only %d free 2 MiB hugepages (need %d)" % (_meminfo("HugePages_Free"), need)
        if not _hugetlbfs_mounted():
            os.makedirs(HUGE_DIR, exist_ok=True)
            r = subprocess.run(["mount", "-t", "hugetlbfs", "nodev", HUGE_DIR],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
            if r.returncode != 0 or not _hugetlbfs_mounted():
                return "mount hugetlbfs on %s failed: %s" % (HUGE_DIR, r.stdout.decode().strip())
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        return "hugepage setup failed: %s" % e
    return None


def choose_memory(mode="auto", processes=2):
    """mode: auto (hugepages, else no-huge), huge, nohuge. Returns 'huge' or 'nohuge'."""
    if mode in ("auto", "huge"):
        why = setup_hugepages(processes)
        if why is None:
            return "huge"
        if mode == "huge":
            raise Skip("hugepages: " + why)
        log("hugepages unavailable (%s): falling back to --no-huge" % why)
    return "nohuge"


def eal_mem_args(mem, prefix, virtio_user=False, mem_mb=MEM_MB):
    """EAL options for one process. --in-memory: no files left in /dev/hugepages or
    /var/run/dpdk (memory is memfd-backed, which vhost-user needs: its fds are
    sent to the peer). virtio-user with hugepages needs --single-file-segments
    (otherwise more than 8 memory regions for vhost-user)."""
    a = ["--file-prefix", prefix, "-m", str(mem_mb)]
    if mem == "nohuge":
        # --no-huge implies --legacy-mem, which --in-memory refuses; the memory is
        # one memfd (shareable), nothing is left in /dev/hugepages.
        a += ["--no-huge"]
    else:
        a += ["--in-memory"]
    if mem == "nohuge":
        pass
    elif virtio_user:
        a += ["--single-file-segments"]
    return a


# ---------------------------------------------------------------------------
# testpmd
PROMPT = b"testpmd> "


class Testpmd:
    """One interactive testpmd. Its stdout is logged to `log_path` and kept in
    memory; cmd() writes one command and returns the output up to the next prompt."""

    def __init__(self, binary, eal, pmd, log_path, fwd_lcore, name="testpmd", env=None):
        self.name = name
        main = 1 - fwd_lcore
        # stdout is a pipe: without stdbuf, printf output would sit in stdio's
        # buffer while the prompt (written directly) arrives.
        stdbuf = ["stdbuf", "-oL", "-eL"] if shutil.which("stdbuf") else []
        self.argv = (stdbuf + [binary, "-l", "0,1", "--main-lcore", str(main), "--no-pci"] + eal +
                     ["--", "-i"] + pmd)
        self.log = open(log_path, "ab")
        self.log.write(("# " + " ".join(self.argv) + "\n").encode())
        self.log.flush()
        self.buf = b""
        self.pos = 0           # consumed up to here
        self.cv = threading.Condition()
        self.eof = False
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, preexec_fn=_child_setup,
                                     env=env)
        _children.append(self)
        self.thread = threading.Thread(target=self._reader, daemon=True)
        self.thread.start()

    def _reader(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                d = os.read(fd, 65536)
            except OSError:
                d = b""
            with self.cv:
                if not d:
                    self.eof = True
                    self.cv.notify_all()
                    break
                self.buf += d
                self.cv.notify_all()
            try:
                self.log.write(d)
                self.log.flush()
            except ValueError:
                pass

    def alive(self):
        return self.proc.poll() is None

    def text(self):
        with self.cv:
            return self.buf.decode(errors="replace")

    def wait_prompt(self, timeout):
        """Wait for the next prompt after self.pos; returns the text before it."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                i = self.buf.find(PROMPT, self.pos)
                if i >= 0:
                    out = self.buf[self.pos:i]
                    self.pos = i + len(PROMPT)
                    return out.decode(errors="replace")
                left = deadline - time.monotonic()
                if self.eof or left <= 0:
                    raise RuntimeError("%s: %s waiting for the prompt; last output:\n%s" % (
                        self.name, "exited" if self.eof else "timed out",
                        self.buf[-3000:].decode(errors="replace")))
                self.cv.wait(min(left, 0.5))

    def cmd(self, line, timeout=20):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()
        return self.wait_prompt(timeout)

    def port_stats(self, port, timeout=10):
        """{'rx': packets, 'rx_bytes', 'tx', 'tx_bytes', 'rx_missed', 'rx_errors', 'tx_errors', 'nombuf'}"""
        out = self.cmd("show port stats %d" % port, timeout)
        g = lambda k: int(re.search(k + r":\s*(\d+)", out).group(1))
        return {"rx": g("RX-packets"), "rx_bytes": g("RX-bytes"), "tx": g("TX-packets"),
                "tx_bytes": g("TX-bytes"), "rx_missed": g("RX-missed"),
                "rx_errors": g("RX-errors"), "tx_errors": g("TX-errors"),
                "nombuf": g("RX-nombuf"), "t": time.monotonic()}

    def quit(self, timeout=20):
        """'quit', wait for exit; returns the exit status (killed after timeout)."""
        if self.alive():
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log("%s: no exit %g s after quit: killing" % (self.name, timeout))
                self.kill()
        self.proc.wait()
        self.thread.join(5)
        return self.proc.returncode

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self in _children:
            _children.remove(self)


class Daemon:
    """A backend daemon (vdm-vhost-user-net) in its own process group."""

    def __init__(self, argv, log_path, cpu=None, name="daemon"):
        self.name = name
        if cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(cpu)] + argv
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.log.write(("# " + " ".join(argv) + "\n").encode())
        self.log.flush()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, preexec_fn=_child_setup)
        _children.append(self)

    def alive(self):
        return self.proc.poll() is None

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def send(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self, grace=10.0):
        """SIGTERM, SIGKILL (group) after `grace`. Returns the exit status."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc.wait()
        if self in _children:
            _children.remove(self)
        return self.proc.returncode

    def kill(self, sig=signal.SIGKILL):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        if self in _children:
            _children.remove(self)


def install_exit_handlers():
    """Children die with us: SIGTERM/SIGHUP/SIGINT raise SystemExit (so finally
    blocks run), atexit kills every remaining group."""
    import atexit
    atexit.register(kill_all)

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, on_signal)


def wait_socket(path, child, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return True
        if not child.alive():
            return False
        time.sleep(0.02)
    return False


# ---------------------------------------------------------------------------
# Backends
def vhost_testpmd(binary, sock, queues, mem, log_path, prefix, fwd_lcore=1, extra_vdev=""):
    """DPDK's vhost PMD (server socket) in io forwarding, port looped to itself:
    what it dequeues from the driver's TX rings it enqueues on the RX rings."""
    eal = eal_mem_args(mem, prefix) + ["--log-level=lib.vhost.config:debug",
        "--vdev", "net_vhost0,iface=%s,queues=%d,client=0%s" % (sock, queues, extra_vdev)]
    pmd = ["--nb-cores=1", "--total-num-mbufs=16384", "--port-topology=loop",
           "--forward-mode=io", "--no-flush-rx", "--rxq=%d" % queues, "--txq=%d" % queues]
    return Testpmd(binary, eal, pmd, log_path, fwd_lcore, name="vhost-testpmd")


def vdm_daemon(daemon, sock, queues, log_path, in_order=True, busy_poll=False, cpu=1,
               extra=(), queue_size=None):
    argv = [daemon, "--socket", sock, "--queues", str(queues),
            "--in-order", "on" if in_order else "off", "--loopback"]
    if queue_size:
        argv.append("--queue-size=%d" % queue_size)  # its largest ring (default 256)
    if busy_poll:
        argv.append("--busy-poll")
    return Daemon(argv + list(extra), log_path, cpu=cpu, name="vdm-vhost-user-net")


def virtio_user_vdev(sock, queues, packed, in_order, mrg_rxbuf, queue_size=None):
    s = "net_virtio_user0,path=%s,queues=%d,packed_vq=%d,in_order=%d,mrg_rxbuf=%d" % (
        sock, queues, packed, in_order, mrg_rxbuf)
    if queue_size:
        s += ",queue_size=%d" % queue_size
    return s


# ---------------------------------------------------------------------------
# What the two sides negotiated
VIRTIO_NET_BITS = {
    0: "CSUM", 1: "GUEST_CSUM", 2: "CTRL_GUEST_OFFLOADS", 3: "MTU", 5: "MAC",
    7: "GUEST_TSO4", 8: "GUEST_TSO6", 9: "GUEST_ECN", 10: "GUEST_UFO", 11: "HOST_TSO4",
    12: "HOST_TSO6", 13: "HOST_ECN", 14: "HOST_UFO", 15: "MRG_RXBUF", 16: "STATUS",
    17: "CTRL_VQ", 18: "CTRL_RX", 19: "CTRL_VLAN", 20: "CTRL_RX_EXTRA",
    21: "GUEST_ANNOUNCE", 22: "MQ", 23: "CTRL_MAC_ADDR", 24: "NOTIFY_ON_EMPTY",
    27: "ANY_LAYOUT", 28: "INDIRECT_DESC", 29: "EVENT_IDX", 30: "PROTOCOL_FEATURES",
    32: "VERSION_1", 33: "ACCESS_PLATFORM", 34: "RING_PACKED", 35: "IN_ORDER",
    36: "ORDER_PLATFORM", 37: "SR_IOV", 38: "NOTIFICATION_DATA", 40: "RING_RESET",
    63: "SPEED_DUPLEX", 62: "RSS", 61: "RSC_EXT", 57: "HASH_REPORT",
}
F_MRG_RXBUF, F_MQ, F_RING_PACKED, F_IN_ORDER = 15, 22, 34, 35


def feature_names(bits):
    return " ".join(VIRTIO_NET_BITS.get(b, "bit%d" % b) for b in range(64) if bits >> b & 1)


def virtio_user_features(text):
    """Features virtio-user set on the device (testpmd log, needs
    --log-level=pmd.net.virtio.*:debug), without PROTOCOL_FEATURES (bit 30)."""
    m = re.findall(r"set features: 0x([0-9a-fA-F]+)", text)
    return int(m[-1], 16) if m else None


def vhost_features(text):
    """Features DPDK's vhost library recorded (needs --log-level=lib.vhost.config:debug)."""
    m = re.findall(r"negotiated Virtio features: 0x([0-9a-fA-F]+)", text)
    return int(m[-1], 16) if m else None


def vdm_features(text):
    m = re.findall(r"vdm-vhost-user-net: negotiated features 0x([0-9a-fA-F]+)", text)
    return int(m[-1], 16) if m else None


def vdm_flag_lines(text):
    """{'VIRTIO_F_IN_ORDER': True|False, ...} from the daemon's 'X negotiated' / 'X NOT negotiated' lines."""
    out = {}
    for m in re.finditer(r"vdm-vhost-user-net: (VIRTIO_[A-Z_]+) (NOT )?negotiated", text):
        out[m.group(1)] = m.group(2) is None
    return out


DEBUG_LOG_ARGS = ["--log-level=pmd.net.virtio.*:debug", "--log-level=lib.vhost.config:debug"]


def main(argv):
    """dpdkenv.py --setup [STAMP]: install dpdk-dev and reserve hugepages (build
    time, so that no test spends its timeout on apt-get). Never fails: a test
    that then finds no DPDK skips (77)."""
    if len(argv) < 2 or argv[1] != "--setup":
        print("usage: dpdkenv.py --setup [STAMP]", file=sys.stderr)
        return 2
    msg = []
    try:
        msg.append("testpmd: " + ensure_testpmd())
        msg.append("memory: " + choose_memory("auto"))
    except Skip as e:
        msg.append("skip: %s" % e)
    log(", ".join(msg))
    if len(argv) > 2:
        with open(argv[2], "w") as f:
            f.write("\n".join(msg) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
