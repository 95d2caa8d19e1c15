#!/usr/bin/env python3
"""A logging man-in-the-middle for vhost-user: listens where the frontend (QEMU)
connects, connects to the backend for each frontend connection, relays every
message in both directions with its file descriptors (SCM_RIGHTS), and logs each
message with the payload decoded for the ones that matter to ring state
(features, vring num/base/addr/enable, inflight, config, status).

  vhost_user_spy.py LISTEN_SOCK BACKEND_SOCK [LOGFILE]

When the backend side closes (e.g. the daemon was killed), the frontend side is
closed too, so a frontend with reconnect=1 reconnects through the spy to the
restarted backend. python3 standard library only.
"""

import array
import os
import socket
import struct
import sys
import threading
import time

REQ = {
    1: "GET_FEATURES", 2: "SET_FEATURES", 3: "SET_OWNER", 4: "RESET_OWNER", 5: "SET_MEM_TABLE",
    6: "SET_LOG_BASE", 7: "SET_LOG_FD", 8: "SET_VRING_NUM", 9: "SET_VRING_ADDR",
    10: "SET_VRING_BASE", 11: "GET_VRING_BASE", 12: "SET_VRING_KICK", 13: "SET_VRING_CALL",
    14: "SET_VRING_ERR", 15: "GET_PROTOCOL_FEATURES", 16: "SET_PROTOCOL_FEATURES",
    17: "GET_QUEUE_NUM", 18: "SET_VRING_ENABLE", 19: "SEND_RARP", 20: "NET_SET_MTU",
    21: "SET_BACKEND_REQ_FD", 22: "IOTLB_MSG", 23: "SET_VRING_ENDIAN", 24: "GET_CONFIG",
    25: "SET_CONFIG", 26: "CREATE_CRYPTO_SESSION", 27: "CLOSE_CRYPTO_SESSION",
    28: "POSTCOPY_ADVISE", 29: "POSTCOPY_LISTEN", 30: "POSTCOPY_END", 31: "GET_INFLIGHT_FD",
    32: "SET_INFLIGHT_FD", 33: "GPU_SET_SOCKET", 34: "RESET_DEVICE", 35: "VRING_KICK",
    36: "GET_MAX_MEM_SLOTS", 37: "ADD_MEM_REG", 38: "REM_MEM_REG", 39: "SET_STATUS",
    40: "GET_STATUS",
}
PROTO = {
    0: "MQ", 1: "LOG_SHMFD", 2: "RARP", 3: "REPLY_ACK", 4: "NET_MTU", 5: "BACKEND_REQ",
    6: "CROSS_ENDIAN", 7: "CRYPTO_SESSION", 8: "PAGEFAULT", 9: "CONFIG", 10: "BACKEND_SEND_FD",
    11: "HOST_NOTIFIER", 12: "INFLIGHT_SHMFD", 13: "RESET_DEVICE", 14: "INBAND_NOTIFICATIONS",
    15: "CONFIGURE_MEM_SLOTS", 16: "STATUS",
}
HDR = struct.Struct("<III")
MAX_FDS = 64


def bits(v, names=None):
    out = []
    for b in range(64):
        if v >> b & 1:
            out.append(names.get(b, str(b)) if names else str(b))
    return ",".join(out)


def decode(req, flags, payload, nfds):
    """One line of text for a message's payload."""
    reply = bool(flags & 0x4)
    p = payload
    try:
        if req in (1, 2) and len(p) >= 8 or req == 15 and reply or req == 16:
            v = struct.unpack_from("<Q", p)[0]
            return "0x%x [%s]" % (v, bits(v, PROTO if req in (15, 16) else None))
        if req in (8, 10, 18) or (req == 11 and len(p) >= 8):
            idx, num = struct.unpack_from("<II", p)
            extra = ""
            if req in (10, 11):
                extra = (" (avail %d wrap %d, used %d wrap %d if packed)"
                         % (num & 0x7fff, num >> 15 & 1, num >> 16 & 0x7fff, num >> 31 & 1))
            return "index %d num %d = 0x%x%s" % (idx, num, num, extra)
        if req == 9:
            idx, fl, desc, used, avail, log = struct.unpack_from("<IIQQQQ", p)
            return "index %d flags 0x%x desc 0x%x used 0x%x avail 0x%x" % (idx, fl, desc, used, avail)
        if req in (12, 13, 14):
            v = struct.unpack_from("<Q", p)[0]
            return "index %d%s fds=%d" % (v & 0xff, " NOFD" if v & 0x100 else "", nfds)
        if req in (31, 32):
            size, off, nq, qs = struct.unpack_from("<QQHH", p)
            return "mmap_size %d offset %d num_queues %d queue_size %d fds=%d" % (size, off, nq, qs, nfds)
        if req == 5:
            n = struct.unpack_from("<I", p)[0]
            regs = []
            for i in range(n):
                gpa, size, uaddr, off = struct.unpack_from("<QQQQ", p, 8 + 32 * i)
                regs.append("gpa 0x%x size 0x%x uaddr 0x%x off 0x%x" % (gpa, size, uaddr, off))
            return "%d regions fds=%d: %s" % (n, nfds, "; ".join(regs))
        if req in (24, 25):
            off, size, fl = struct.unpack_from("<III", p)
            return "offset %d size %d flags %d%s" % (off, size, fl, (" data %s" % p[12:12 + 8].hex())
                                                       if reply else "")
        if req in (39, 40, 17, 36) and len(p) >= 8:
            return "0x%x" % struct.unpack_from("<Q", p)[0]
    except struct.error:
        pass
    return "%d bytes%s" % (len(p), " fds=%d" % nfds if nfds else "")


def recv_exact(sock, n, want_fds=False):
    """Read exactly n bytes (n > 0); with want_fds, collect SCM_RIGHTS fds.
    Returns (bytes, [fds]) or (None, []) on EOF."""
    data = b""
    fds = []
    while len(data) < n:
        if want_fds:
            msg, anc, flags, _ = sock.recvmsg(n - len(data), socket.CMSG_SPACE(MAX_FDS * 4))
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(cdata[:len(cdata) - len(cdata) % a.itemsize])
                    fds.extend(a)
        else:
            msg = sock.recv(n - len(data))
        if not msg:
            for fd in fds:
                os.close(fd)
            return None, []
        data += msg
    return data, fds


class Spy:
    def __init__(self, listen_path, backend_path, log_path=None):
        self.listen_path, self.backend_path = listen_path, backend_path
        self.log_file = open(log_path, "a") if log_path else sys.stdout
        self.lock = threading.Lock()
        self.t0 = time.monotonic()
        self.conn_no = 0
        self.closed = False
        self.resume()

    def resume(self):
        """(Re)open the listening socket."""
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(self.listen_path):
            os.unlink(self.listen_path)
        self.srv.bind(self.listen_path)
        self.srv.listen(4)
        threading.Thread(target=self._accept, args=(self.srv,), daemon=True).start()

    def pause(self):
        """Stop listening (and remove the socket file), as a dead backend would:
        the frontend's reconnect attempts then fail at connect()."""
        self.log("spy: paused (backend down)")
        try:
            self.srv.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.srv.close()
        if os.path.exists(self.listen_path):
            os.unlink(self.listen_path)

    def log(self, text):
        with self.lock:
            self.log_file.write("[%8.3f] %s\n" % (time.monotonic() - self.t0, text))
            self.log_file.flush()

    def close(self):
        self.closed = True
        try:
            self.srv.close()
        except OSError:
            pass

    def _accept(self, srv):
        while not self.closed:
            try:
                front, _ = srv.accept()
            except OSError:
                return
            self.conn_no += 1
            n = self.conn_no
            back = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                back.connect(self.backend_path)
            except OSError as e:
                self.log("conn %d: backend connect failed: %s; closing the frontend" % (n, e))
                back.close()
                front.close()
                continue
            self.log("conn %d: frontend connected, relaying to %s" % (n, self.backend_path))
            pair = [front, back]
            threading.Thread(target=self._relay, args=(n, front, back, "F>B", pair), daemon=True).start()
            threading.Thread(target=self._relay, args=(n, back, front, "B>F", pair), daemon=True).start()

    def _relay(self, n, src, dst, tag, pair):
        try:
            while True:
                hdr, fds = recv_exact(src, HDR.size, want_fds=True)
                if hdr is None:
                    self.log("conn %d: %s EOF" % (n, tag))
                    break
                req, flags, size = HDR.unpack(hdr)
                payload = b""
                if size:
                    if size > 1 << 20:
                        self.log("conn %d: %s absurd size %d" % (n, tag, size))
                        break
                    payload, more = recv_exact(src, size, want_fds=True)
                    fds += more
                    if payload is None:
                        self.log("conn %d: %s EOF inside a message" % (n, tag))
                        break
                self.log("conn %d: %s %s%s %s" % (n, tag, REQ.get(req, "REQ_%d" % req),
                                                  " reply" if flags & 0x4 else
                                                  (" need_reply" if flags & 0x8 else ""),
                                                  decode(req, flags, payload, len(fds))))
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
                try:
                    dst.sendmsg([hdr + payload], anc)
                finally:
                    for fd in fds:
                        os.close(fd)
        except OSError as e:
            self.log("conn %d: %s error %s" % (n, tag, e))
        for s in pair:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        src.close()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    Spy(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
