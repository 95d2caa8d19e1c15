/*
 * virtio-net: the network device model (virtio spec 5.1) on the virtio core
 * and a packet peer.
 *
 * No transport code: a host (a vhost-user backend, a test, the device host)
 * owns guest memory and the transport ops, calls virtio_net_realize, sets a
 * peer with virtio_net_set_peer and then drives the embedded VirtIODevice
 * through the core's API (virtio_set_features, virtio_queue_notify, ...).
 *
 * Queues: RX of pair k is queue 2k, TX is 2k+1; the control queue is the
 * last one, present when CTRL_VQ may be offered (spec 5.1.2).
 *
 * Frames travel without the virtio-net header: the device strips it from
 * guest TX buffers and writes it in front of every RX frame. Its size
 * follows the negotiated features (12 bytes with VERSION_1 or MRG_RXBUF,
 * else 10; spec 5.1.6).
 *
 * Context: one thread drives the device and its peer (the thread that runs
 * the queue handlers); every function here runs there.
 */
#ifndef HW_VIRTIO_VIRTIO_NET_H
#define HW_VIRTIO_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <glib.h>

#include "hw/virtio/virtio.h"

#define VIRTIO_ID_NET 1

/* Feature bits (spec 5.1.3). Only some are implemented: see virtio-features.c. */
#define VIRTIO_NET_F_CSUM                   0
#define VIRTIO_NET_F_GUEST_CSUM             1
#define VIRTIO_NET_F_CTRL_GUEST_OFFLOADS    2
#define VIRTIO_NET_F_MTU                    3
#define VIRTIO_NET_F_MAC                    5
#define VIRTIO_NET_F_GUEST_TSO4             7
#define VIRTIO_NET_F_GUEST_TSO6             8
#define VIRTIO_NET_F_GUEST_ECN              9
#define VIRTIO_NET_F_GUEST_UFO              10
#define VIRTIO_NET_F_HOST_TSO4              11
#define VIRTIO_NET_F_HOST_TSO6              12
#define VIRTIO_NET_F_HOST_ECN               13
#define VIRTIO_NET_F_HOST_UFO               14
#define VIRTIO_NET_F_MRG_RXBUF              15
#define VIRTIO_NET_F_STATUS                 16
#define VIRTIO_NET_F_CTRL_VQ                17
#define VIRTIO_NET_F_CTRL_RX                18
#define VIRTIO_NET_F_CTRL_VLAN              19
#define VIRTIO_NET_F_CTRL_RX_EXTRA          20
#define VIRTIO_NET_F_GUEST_ANNOUNCE         21
#define VIRTIO_NET_F_MQ                     22
#define VIRTIO_NET_F_CTRL_MAC_ADDR          23

/* Config status (spec 5.1.4). */
#define VIRTIO_NET_S_LINK_UP                1
#define VIRTIO_NET_S_ANNOUNCE               2

/* spec 5.1.4.1: max_virtqueue_pairs is 1..0x8000. */
#define VIRTIO_NET_MQ_MAX_PAIRS             0x8000u

/* Header flags and GSO types (spec 5.1.6). */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM         1
#define VIRTIO_NET_HDR_F_DATA_VALID         2
#define VIRTIO_NET_HDR_GSO_NONE             0

/* Control queue (spec 5.1.6.5). */
#define VIRTIO_NET_OK                       0
#define VIRTIO_NET_ERR                      1
#define VIRTIO_NET_CTRL_RX                  0
#define VIRTIO_NET_CTRL_RX_PROMISC          0
#define VIRTIO_NET_CTRL_RX_ALLMULTI         1
#define VIRTIO_NET_CTRL_MAC                 1
#define VIRTIO_NET_CTRL_MAC_TABLE_SET       0
#define VIRTIO_NET_CTRL_MAC_ADDR_SET        1
#define VIRTIO_NET_CTRL_VLAN                2
#define VIRTIO_NET_CTRL_ANNOUNCE            3
#define VIRTIO_NET_CTRL_MQ                  4
#define VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET     0

/*
 * The header in front of every frame (little-endian). num_buffers exists
 * with VERSION_1 or MRG_RXBUF; without both the header is 10 bytes.
 */
typedef struct __attribute__((packed)) VirtIONetHdr {
    uint8_t flags;
    uint8_t gso_type;
    uint16_t hdr_len;
    uint16_t gso_size;
    uint16_t csum_start;
    uint16_t csum_offset;
    uint16_t num_buffers;
} VirtIONetHdr;

/* Configuration space (spec 5.1.4), little-endian, up to mtu. */
typedef struct __attribute__((packed)) VirtIONetConfig {
    uint8_t mac[6];
    uint16_t status;
    uint16_t max_virtqueue_pairs;
    uint16_t mtu;
} VirtIONetConfig;

/* Largest frame (without the virtio-net header) either direction carries. */
#define VIRTIO_NET_MAX_FRAME (65535u + 18u)

/* Device properties, named as QEMU's virtio-net-pci where QEMU has them. */
typedef struct VirtIONetConf {
    uint8_t mac[6];             /* "mac", default 52:54:00:12:34:56 */
    uint32_t queue_pairs;       /* "queues": queue pairs, default 1 (MQ offered when > 1) */
    uint32_t rx_queue_size;     /* "rx_queue_size", default 256 */
    uint32_t tx_queue_size;     /* "tx_queue_size", default 256 */
    uint32_t mtu;               /* "host_mtu": 0 = MTU not offered */
    bool mrg_rxbuf;             /* "mrg_rxbuf", default on */
    bool status;                /* "status": offer STATUS (link up), default on */
    bool ctrl_vq;               /* "ctrl_vq", default on */
    bool ctrl_rx;               /* "ctrl_rx", default on (needs ctrl_vq) */
    bool ctrl_mac_addr;         /* "ctrl_mac_addr", default on (needs ctrl_vq) */
    bool in_order;              /* "in_order": offer VIRTIO_F_IN_ORDER, default off (as QEMU) */
    bool packed;                /* "packed", default off */
    bool event_idx;             /* "event_idx", default on */
    bool indirect_desc;         /* "indirect_desc", default on */
    bool tx_batch;              /* "tx-batch": IN_ORDER batch publication on TX, default on */
    uint32_t tx_burst;          /* "tx-burst": TX buffers per handler run, default 256 */
} VirtIONetConf;

/* Per queue pair counters. */
typedef struct VirtIONetQueueStats {
    uint64_t tx_frames, tx_bytes;       /* handed to the peer */
    uint64_t rx_frames, rx_bytes;       /* delivered to the guest */
    uint64_t rx_buffers;                /* RX buffers used (> rx_frames with MRG_RXBUF) */
    uint64_t rx_drop_no_buffer;         /* dropped by the peer after RX_NO_BUFFERS */
    uint64_t rx_drop_too_small;         /* no (set of) buffer(s) could ever hold it */
    uint64_t rx_drop_oversize;          /* frame longer than VIRTIO_NET_MAX_FRAME */
    uint64_t rx_drop_not_ready;         /* RX queue not running */
    uint64_t rx_drop_malformed;         /* RX buffer shorter than the header (MRG_RXBUF) */
    uint64_t rx_no_buffer_events;       /* times receive found no buffer (frame held or dropped) */
    uint64_t tx_drop_oversize;          /* TX frame longer than VIRTIO_NET_MAX_FRAME */
    uint64_t tx_drop_malformed;         /* TX frame of zero bytes */
    uint64_t tx_held;                   /* times the peer asked TX to wait */
} VirtIONetQueueStats;

typedef struct VirtIONetStats {
    uint64_t ctrl_ok, ctrl_err;
} VirtIONetStats;

/*
 * The device's peer: where TX frames go and who feeds RX (QEMU's NetClient,
 * reduced). Set with virtio_net_set_peer; all hooks optional except send.
 */
typedef struct VirtIONetPeerOps {
    /*
     * A guest frame from TX queue pair @qp, header stripped: @len bytes in
     * @iov (guest memory, valid only during the call; read it, don't keep
     * it). Return true when the frame is taken (delivered, or dropped and
     * counted by the peer), false when the peer cannot take it now: the
     * buffer goes back to the ring and TX on @qp stops until the peer calls
     * virtio_net_tx_resume().
     */
    bool (*send)(void *opaque, unsigned qp, const struct iovec *iov, unsigned iovcnt, size_t len);
    /*
     * End of a TX burst on @qp, after its completions were published:
     * publish what the burst delivered elsewhere (virtio_net_rx_flush).
     */
    void (*send_done)(void *opaque, unsigned qp);
    /* The driver made RX buffers available on @qp (it kicked RX). */
    void (*rx_ready)(void *opaque, unsigned qp);
    /*
     * A TX burst stopped at tx-burst buffers with more available: call
     * virtio_net_tx_resume(@qp) soon (e.g. from an idle source) so that one
     * kick never runs unbounded. Without this hook the device keeps going.
     */
    void (*tx_more)(void *opaque, unsigned qp);
    /*
     * The device was reset (by the driver, or a vhost-user frontend): a
     * frame held for its RX rings is stale, and a source waiting for RX
     * buffers must not wait for a driver that may never come back.
     */
    void (*reset)(void *opaque);
} VirtIONetPeerOps;

/* One queue pair's device state. */
typedef struct VirtIONetQueue {
    VirtQueue *rx_vq, *tx_vq;
    unsigned rx_pending;        /* RX buffers filled since the last flush */
    bool rx_need_notify;
    bool tx_waiting;            /* the peer said busy: TX stopped until tx_resume */
    bool tx_running;            /* a TX burst is in progress (no re-entry) */
    bool rx_notify_on;          /* what we last told the ring about RX kicks */
    bool tx_notify_on;          /* ... and TX kicks */
    VirtQueueElement *rx_elems; /* one frame's RX buffers (queue size entries) */
    struct iovec *rx_sg;        /* VIRTQUEUE_MAX_SG iovecs: the RX buffer being written */
    struct iovec *tx_sg;        /* ... the TX buffer being sent (a loopback peer writes RX meanwhile) */
    VirtIONetQueueStats stats;
} VirtIONetQueue;

/*
 * Told of every status write (@reset false, after the core applied it) and
 * of every reset (@reset true): for a host that serves the data queues
 * elsewhere (vhost mode: vhost_user_base_status_changed).
 */
typedef void VirtIONetStatusHook(void *opaque, bool reset);

typedef struct VirtIONet {
    VirtIODevice parent_obj;    /* first: VIRTIO_NET() casts from it */
    VirtIONetConf conf;
    unsigned max_queue_pairs;
    unsigned curr_queue_pairs;  /* set by VQ_PAIRS_SET (1 until then) */
    unsigned hdr_len;           /* 10 or 12, from the negotiated features */
    bool mrg_rxbuf;             /* negotiated */
    bool promisc, allmulti;     /* CTRL_RX state (recorded, not filtered on) */
    uint32_t mac_table_uni, mac_table_multi;    /* entries of the last MAC_TABLE_SET */
    VirtIONetQueue *queues;     /* max_queue_pairs */
    VirtQueue *ctrl_vq;         /* NULL without a control queue */
    const VirtIONetPeerOps *peer;
    void *peer_opaque;
    VirtIONetStats stats;
    struct iovec *ctrl_sg;      /* VIRTQUEUE_MAX_SG iovecs for control commands */
    bool poll_mode;             /* the host polls the rings: never ask for kicks */
    VirtIONetStatusHook *status_hook;   /* NULL: none (virtio_net_set_status_hook) */
    void *status_opaque;
} VirtIONet;

static inline VirtIONet *VIRTIO_NET(VirtIODevice *vdev)
{
    return (VirtIONet *)vdev;
}

/* Defaults (QEMU's where QEMU has the property). */
void virtio_net_conf_init(VirtIONetConf *conf);
/*
 * Set a property by name ("in_order", "packed", "mrg_rxbuf", "queues",
 * "mac", "rx_queue_size", ...): on/off/true/false for booleans. Returns
 * false with @errp set for an unknown name or a bad value.
 */
bool virtio_net_conf_set(VirtIONetConf *conf, const char *name, const char *value, GError **errp);
/* Call @fn for each property (-device TYPE,help). */
void virtio_net_conf_list(void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                          void *opaque);
/* Call @fn for each property with its value in @conf (qom-list/qom-get). */
void virtio_net_conf_list_values(const VirtIONetConf *conf,
                                 void (*fn)(const char *name, const char *type, const char *value,
                                            void *opaque),
                                 void *opaque);
/* Parse "52:54:00:12:34:56". */
bool virtio_net_parse_mac(const char *s, uint8_t mac[6]);

/*
 * Set up @n with guest memory @mem (may be NULL: a vhost-user backend
 * supplies it): queues, config space and offered features. Returns false
 * with @errp set for a bad configuration.
 */
bool virtio_net_realize(VirtIONet *n, const VirtIONetConf *conf, GuestMemory *mem, GError **errp);
void virtio_net_unrealize(VirtIONet *n);

void virtio_net_set_peer(VirtIONet *n, const VirtIONetPeerOps *ops, void *opaque);
/* Set (after virtio_net_realize) or clear (@fn NULL) the status hook. */
void virtio_net_set_status_hook(VirtIONet *n, VirtIONetStatusHook *fn, void *opaque);

/*
 * The host polls the rings (calls virtio_queue_notify on every RX and TX
 * queue in a loop, as DPDK's vhost PMD does): the device then disables
 * driver kicks once and never asks for them again.
 */
void virtio_net_set_poll_mode(VirtIONet *n, bool poll);

/* Queue @index (re)started under a vhost-user host: forget its per-run state. */
void virtio_net_queue_started(VirtIONet *n, unsigned index);

/* Queue indices. */
static inline unsigned virtio_net_rx_queue(unsigned qp) { return 2 * qp; }
static inline unsigned virtio_net_tx_queue(unsigned qp) { return 2 * qp + 1; }

/* Outcome of virtio_net_receive. */
typedef enum VirtIONetRxResult {
    VIRTIO_NET_RX_OK,           /* delivered (published at the next virtio_net_rx_flush) */
    /*
     * No RX buffer (or not enough for this frame with MRG_RXBUF): nothing was
     * consumed. Hold the frame and try again after rx_ready, or drop it and
     * call virtio_net_rx_drop_no_buffer.
     */
    VIRTIO_NET_RX_NO_BUFFERS,
    VIRTIO_NET_RX_DROPPED,      /* refused for good and counted (size, queue stopped, broken) */
} VirtIONetRxResult;

/*
 * Deliver a frame (no virtio-net header: the device writes one) to RX queue
 * pair @qp. The buffers are filled but not yet published: call
 * virtio_net_rx_flush after a burst (one publication, one notification).
 * Never uses batched publication: every used entry carries its own length.
 */
VirtIONetRxResult virtio_net_receive(VirtIONet *n, unsigned qp, const struct iovec *iov, unsigned iovcnt);
/* Publish the RX buffers filled on @qp and notify the driver once. */
void virtio_net_rx_flush(VirtIONet *n, unsigned qp);
/* The peer dropped a frame that found no RX buffer on @qp: count it. */
void virtio_net_rx_drop_no_buffer(VirtIONet *n, unsigned qp);
/* Is RX queue pair @qp running (a frame could be delivered at all)? */
bool virtio_net_rx_running(VirtIONet *n, unsigned qp);

/* The peer can take frames again (after send returned false), or tx_more: run TX on @qp. */
void virtio_net_tx_resume(VirtIONet *n, unsigned qp);

/* Link state (STATUS): config change notification when it changes. */
void virtio_net_set_link(VirtIONet *n, bool up);

void virtio_net_get_queue_stats(const VirtIONet *n, unsigned qp, VirtIONetQueueStats *stats);
void virtio_net_get_stats(const VirtIONet *n, VirtIONetStats *stats);

#endif
