/*
 * libFuzzer target: a hostile peer against the stream netdev's framing
 * (net/socket.c, 4-byte big-endian length then the frame) through one end
 * of a socketpair given as -netdev socket,fd=N, with a fake NIC that may be
 * busy, be told of RX buffers, be reset, and transmit meanwhile. Checks:
 * the sanitizers, every delivered frame 1..NET_MAX_FRAME bytes long, and a
 * frame the NIC refused as busy is offered again, whole, before any later one.
 *
 * Input (a truncated input reads as zeros): operations, an opcode byte (b % 6)
 * and its arguments:
 *   0 WRITE   u16 n, then n raw bytes     the peer writes them (as far as the socket takes)
 *   1 BUSY    u8 on                       the NIC has RX buffers or not
 *   2 READY                               the NIC posted RX buffers (rx_ready)
 *   3 RESET                               the NIC was reset (rx_reset)
 *   4 LOOP    u8 n                        n main-loop iterations
 *   5 SEND    u16 len                     the NIC transmits a frame; the peer drains what it got
 */
#include <errno.h>
#include <glib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz-input.h"
#include "net/net.h"

typedef struct Nic {
    bool busy;
    size_t refused_len;         /* length of the frame last refused as busy (0: none) */
    uint64_t frames;
} Nic;

static NetRxResult nic_receive(void *opaque, unsigned queue, const struct iovec *iov, unsigned iovcnt)
{
    Nic *nic = opaque;
    size_t len = 0;

    for (unsigned i = 0; i < iovcnt; i++) {
        len += iov[i].iov_len;
    }
    if (len == 0 || len > NET_MAX_FRAME) {
        __builtin_trap();       /* the backend must never deliver such a frame */
    }
    if (nic->refused_len && len != nic->refused_len) {
        __builtin_trap();       /* a held frame comes again before any other */
    }
    if (nic->busy) {
        nic->refused_len = len;
        return NET_RX_BUSY;
    }
    nic->refused_len = 0;
    nic->frames++;
    return NET_RX_OK;
}

static void nic_flush(void *opaque)
{
}

static void nic_tx_resume(void *opaque, unsigned queue)
{
}

static const NetFrontendOps nic_ops = {
    .receive = nic_receive,
    .flush = nic_flush,
    .tx_resume = nic_tx_resume,
};

static void drain(int fd)
{
    uint8_t buf[4096];

    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0) {
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t frame[NET_MAX_FRAME + 1];
    Input in = { data, size };
    QDevOpt opts[3];
    NetClientState *nc;
    char *err = NULL, fd_s[16];
    Nic nic = { 0 };
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
        return 0;
    }
    g_snprintf(fd_s, sizeof(fd_s), "%d", sv[1]);
    opts[0] = (QDevOpt){ "type", "socket" };
    opts[1] = (QDevOpt){ "id", "fuzz" };
    opts[2] = (QDevOpt){ "fd", fd_s };
    if (!netdev_new(opts, 3, &err)) {
        __builtin_trap();
    }
    nc = net_client_find("fuzz");
    net_client_attach(nc, &nic_ops, &nic);
    while (in.left) {
        switch (in_u8(&in) % 6) {
        case 0: {
            size_t n = in_u16(&in);

            n = MIN(n, in.left);        /* (MIN evaluates its arguments twice) */

            if (sv[0] >= 0 && send(sv[0], in.p, n, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == EPIPE) {
                close(sv[0]);               /* the backend closed on a bad length */
                sv[0] = -1;
            }
            in.p += n;
            in.left -= n;
            break;
        }
        case 1:
            nic.busy = in_u8(&in) & 1;
            break;
        case 2:
            net_client_rx_ready(nc, 0);
            break;
        case 3:
            net_client_rx_reset(nc);
            nic.refused_len = 0;            /* the held frame was dropped */
            break;
        case 4:
            for (unsigned n = in_u8(&in) % 8 + 1; n; n--) {
                g_main_context_iteration(NULL, FALSE);
            }
            break;
        case 5: {
            size_t len = in_u16(&in) % (NET_MAX_FRAME + 1);
            struct iovec iov = { frame, len };

            net_client_send(nc, 0, &iov, 1, len);
            net_client_send_done(nc, 0);
            if (sv[0] >= 0) {
                drain(sv[0]);
            }
            break;
        }
        }
    }
    net_cleanup();
    if (sv[0] >= 0) {
        close(sv[0]);
    }
    /* sources the netdev removed are gone; let the context forget them */
    while (g_main_context_iteration(NULL, FALSE)) {
    }
    return 0;
}
