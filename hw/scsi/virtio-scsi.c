/*
 * virtio-scsi device model (virtio spec 5.6) on the virtio core and one
 * scsi-hd unit.
 *
 * A command is one element: the request header (19 bytes + cdb_size) in its
 * first readable bytes, then data-out; the response (12 bytes + sense_size)
 * in its first writable bytes, then data-in; split across descriptors
 * however the driver likes (spec 2.6.4). Commands are handed to the disk,
 * which may finish them in any order; each finished command is filled, and
 * after a run of completions one flush publishes them and one notification
 * goes out. Under VIRTIO_F_IN_ORDER the core's ordered fill/flush publishes
 * them in avail order.
 *
 * Control requests (TMF, AN) are answered at once; a TMF that must wait for
 * commands drains the disk first, so every affected command has completed
 * (and been used) before FUNCTION COMPLETE goes back. The event queue only
 * carries PARAM_CHANGE (capacity change) and the EVENTS_MISSED flag.
 *
 * Context: the thread that owns the disk's BlockBackend.
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "hw/qdev-properties.h"
#include "hw/virtio/virtio-scsi.h"
#include "qemu/iov.h"

#define CTRL_QUEUE  0
#define EVENT_QUEUE 1
#define REQ_QUEUE0  2
#define BIT(b) (1ULL << (b))

/* ---------------------------------------------------------------------- */
/* Properties                                                              */

#define PROP(name_, type_, field_, desc_) DEFINE_PROP((name_), PROP_TYPE_##type_, VirtIOSCSIConf, field_, (desc_))

static const Property scsi_props[] = {
    PROP("in_order", BOOL, in_order, "offer VIRTIO_F_IN_ORDER"),
    PROP("packed", BOOL, packed, "offer VIRTIO_F_RING_PACKED"),
    PROP("event_idx", BOOL, event_idx, "offer VIRTIO_RING_F_EVENT_IDX"),
    PROP("indirect_desc", BOOL, indirect_desc, "offer VIRTIO_RING_F_INDIRECT_DESC"),
    PROP("num_queues", UINT32, num_queues, "request queues"),
    PROP("num-queues", UINT32, num_queues, "request queues (alias of num_queues)"),
    PROP("virtqueue_size", UINT32, queue_size, "entries per queue (power of two)"),
    PROP("queue-size", UINT32, queue_size, "entries per queue (alias of virtqueue_size)"),
    PROP("seg-max", UINT32, seg_max, "segments per command (0: queue size - 2)"),
    PROP("max_sectors", UINT32, max_sectors, "largest transfer, in 512-byte sectors"),
    PROP("cmd_per_lun", UINT32, cmd_per_lun, "commands per LUN the driver may queue"),
    PROP("max_target", UINT32, max_target, "highest target number the driver scans"),
    PROP("scsi-id", UINT32, target, "target of the unit"),
    PROP("param_change", BOOL, param_change, "offer VIRTIO_SCSI_F_CHANGE"),
    PROP("used-batch", BOOL, used_batch, "IN_ORDER: publish fully used runs as one used entry"),
};

void virtio_scsi_conf_init(VirtIOSCSIConf *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->num_queues = 1;
    conf->queue_size = 256;
    conf->max_sectors = 0xffff;
    conf->cmd_per_lun = 128;
    conf->max_target = VIRTIO_SCSI_MAX_TARGET;
    conf->param_change = true;
    conf->event_idx = true;
    conf->indirect_desc = true;
    conf->used_batch = true;
}

bool virtio_scsi_conf_set(VirtIOSCSIConf *conf, const char *name, const char *value, GError **errp)
{
    return qdev_prop_set(conf, scsi_props, G_N_ELEMENTS(scsi_props), "virtio-scsi", name, value, errp);
}

void virtio_scsi_conf_list(void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                           void *opaque)
{
    qdev_prop_list(scsi_props, G_N_ELEMENTS(scsi_props), fn, opaque);
}

/* ---------------------------------------------------------------------- */
/* Config space                                                            */

static VirtIOSCSIConfig *scsi_config(VirtIOSCSI *s)
{
    return (VirtIOSCSIConfig *)s->parent_obj.config;
}

static void scsi_update_config(VirtIOSCSI *s)
{
    const VirtIOSCSIConf *c = &s->conf;
    VirtIOSCSIConfig cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.num_queues = htole32(c->num_queues);
    cfg.seg_max = htole32(c->seg_max ? c->seg_max : c->queue_size - 2);
    cfg.max_sectors = htole32(c->max_sectors);
    cfg.cmd_per_lun = htole32(c->cmd_per_lun);
    cfg.event_info_size = htole32(sizeof(VirtIOSCSIEvent));
    cfg.sense_size = htole32(s->sense_size);
    cfg.cdb_size = htole32(s->cdb_size);
    cfg.max_channel = htole16(VIRTIO_SCSI_MAX_CHANNEL);
    cfg.max_target = htole16((uint16_t)c->max_target);
    cfg.max_lun = htole32(VIRTIO_SCSI_MAX_LUN);
    memcpy(scsi_config(s), &cfg, sizeof(cfg));
}

int virtio_scsi_set_config(VirtIOSCSI *s, uint32_t offset, const uint8_t *data, uint32_t len)
{
    const uint32_t first = offsetof(VirtIOSCSIConfig, sense_size);
    const uint32_t end = offsetof(VirtIOSCSIConfig, max_channel);
    VirtIOSCSIConfig cfg;
    uint32_t sense, cdb;

    if (offset > sizeof(cfg) || len > sizeof(cfg) - offset) {
        return -EINVAL;
    }
    if (len == 0) {
        return 0;
    }
    /* spec 5.6.4: the driver may write only sense_size and cdb_size. */
    if (offset < first || offset + len > end) {
        return -EPERM;
    }
    memcpy(&cfg, scsi_config(s), sizeof(cfg));
    memcpy((uint8_t *)&cfg + offset, data, len);
    sense = le32toh(cfg.sense_size);
    cdb = le32toh(cfg.cdb_size);
    /* Bounded (HOSTILE-INPUT.md): these sizes decide where data starts in every command. */
    if (sense > VIRTIO_SCSI_SENSE_SIZE_MAX || cdb > VIRTIO_SCSI_CDB_SIZE_MAX) {
        virtio_error(&s->parent_obj, "bad configuration write: sense_size %u, cdb_size %u", sense, cdb);
        return -EINVAL;
    }
    s->sense_size = sense;
    s->cdb_size = cdb;
    scsi_update_config(s);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* Requests                                                                */

typedef struct VirtIOSCSIReq {
    VirtQueueElement elem;
    VirtIOSCSI *dev;
    VirtQueue *vq;
    SCSIDiskReq sreq;
    uint64_t tag;
    unsigned lun;
    uint32_t resp_size;         /* 12 + sense_size when the command was parsed */
    unsigned resp_split;        /* in_sg index where data-in starts (its entry saved below) */
    struct iovec resp_split_iov;
    size_t data_out_len, data_in_len;
    struct VirtIOSCSIReq *prev, *next;  /* in-flight list */
    struct iovec sg[VIRTQUEUE_MAX_SG];
} VirtIOSCSIReq;

static VirtIOSCSIReq *req_get(VirtIOSCSI *s)
{
    return virtio_req_pool_get(&s->req_pool, sizeof(VirtIOSCSIReq));
}

/* The pool never holds more than can be in flight at once (STYLE.md §10). */
static void req_put(VirtIOSCSI *s, VirtIOSCSIReq *req)
{
    virtio_req_pool_put(&s->req_pool, req, s->conf.num_queues * s->conf.queue_size);
}

static VirtIOSCSIReq *req_pop(VirtIOSCSI *s, VirtQueue *vq)
{
    VirtIOSCSIReq *req = req_get(s);

    if (virtqueue_pop_elem(vq, &req->elem, req->sg, VIRTQUEUE_MAX_SG) != 1) {
        req_put(s, req);
        return NULL;
    }
    req->dev = s;
    req->vq = vq;
    return req;
}

/* Complete @req with @len bytes written: filled now, published by the next flush of its queue. */
static void req_fill(VirtIOSCSIReq *req, uint32_t len)
{
    VirtIOSCSI *s = req->dev;
    VirtIOSCSIQueue *q = &s->queues[virtio_get_queue_index(req->vq)];

    if (!s->quiesce) {
        virtqueue_batch_fill(&q->batch, req->vq, &req->elem, len);
    }
    req_put(s, req);
}

static void scsi_flush_queue(VirtIOSCSI *s, unsigned n)
{
    VirtIOSCSIQueue *q = &s->queues[n];

    virtqueue_batch_flush(&q->batch, &s->parent_obj, virtio_get_queue(&s->parent_obj, n));
}

static void scsi_flush_all(void *opaque)
{
    VirtIOSCSI *s = opaque;

    for (unsigned n = 0; n < s->parent_obj.num_queues; n++) {
        scsi_flush_queue(s, n);
    }
}

/* A request the driver framed wrongly: spec 5.6.6 says the device may treat it as fatal. */
static void req_bad(VirtIOSCSIReq *req, const char *what)
{
    VirtIOSCSI *s = req->dev;
    unsigned n = virtio_get_queue_index(req->vq);

    virtio_error(&s->parent_obj, "queue %u: %s", n, what);
    virtqueue_detach_element(req->vq, &req->elem, 0);
    req_put(s, req);
}

/*
 * Decode a virtio-scsi LUN (spec 5.6.6.1): byte 0 is 1, byte 1 the target,
 * bytes 2-3 the LUN in peripheral (0x00) or flat (0x40) addressing, the rest
 * zero. Returns false when no target answers; *lun is UINT32_MAX for a LUN
 * field the target cannot parse (it then reports LOGICAL UNIT NOT SUPPORTED).
 */
static bool lun_decode(const VirtIOSCSI *s, const uint8_t *lun, unsigned *out)
{
    static const uint8_t zero[4];

    if (!s->disk || lun[0] != 1 || lun[1] != s->conf.target) {
        return false;
    }
    if (lun[2] == 0) {
        *out = lun[3];
    } else if ((lun[2] & 0xc0) == 0x40) {
        *out = (unsigned)(lun[2] & 0x3f) << 8 | lun[3];
    } else {
        return false;
    }
    if (memcmp(lun + 4, zero, 4)) {
        *out = UINT32_MAX;
    }
    return true;
}

static void inflight_add(VirtIOSCSI *s, VirtIOSCSIReq *req)
{
    req->next = NULL;
    req->prev = s->inflight_tail;
    if (s->inflight_tail) {
        s->inflight_tail->next = req;
    } else {
        s->inflight_head = req;
    }
    s->inflight_tail = req;
    s->in_flight++;
    if (s->in_flight > s->stats.max_in_flight) {
        s->stats.max_in_flight = s->in_flight;
    }
}

static void inflight_remove(VirtIOSCSI *s, VirtIOSCSIReq *req)
{
    if (req->prev) {
        req->prev->next = req->next;
    } else {
        s->inflight_head = req->next;
    }
    if (req->next) {
        req->next->prev = req->prev;
    } else {
        s->inflight_tail = req->prev;
    }
    s->in_flight--;
}

/* Write the response header, sense and zero padding into the first resp_size writable bytes. */
static void cmd_write_resp(VirtIOSCSIReq *req, uint8_t response, uint8_t status, uint32_t resid,
                           const uint8_t *sense, uint32_t sense_len)
{
    static const uint8_t zeros[256];
    uint8_t hdr[VIRTIO_SCSI_CMD_RESP_HDR + SCSI_SENSE_FIXED_LEN];
    struct iovec *in = req->elem.in_sg;
    unsigned in_num = req->elem.in_num;
    uint32_t n, off;

    /* Give the response area back its first data segment, trimmed when data-in was set up. */
    if (req->resp_split < in_num) {
        in[req->resp_split] = req->resp_split_iov;
    }
    sense_len = MIN(sense_len, req->resp_size - VIRTIO_SCSI_CMD_RESP_HDR);
    memset(hdr, 0, sizeof(hdr));
    *(uint32_t *)hdr = htole32(sense_len);
    *(uint32_t *)(hdr + 4) = htole32(resid);
    hdr[10] = status;
    hdr[11] = response;
    if (sense_len) {
        memcpy(hdr + VIRTIO_SCSI_CMD_RESP_HDR, sense, sense_len);
    }
    n = VIRTIO_SCSI_CMD_RESP_HDR + sense_len;
    iov_from_buf(in, in_num, 0, hdr, n);
    for (off = n; off < req->resp_size; off += sizeof(zeros)) {
        iov_from_buf(in, in_num, off, zeros, MIN(sizeof(zeros), req->resp_size - off));
    }
    req->dev->stats.resp[response < 16 ? response : 15]++;
}

/* A command answered by the adapter itself (no unit involved). */
static void cmd_fail(VirtIOSCSIReq *req, uint8_t response)
{
    cmd_write_resp(req, response, 0, (uint32_t)MAX(req->data_in_len, req->data_out_len), NULL, 0);
    req_fill(req, req->resp_size);
}

/* Disk completion: status, sense, residual, then fill. */
static void cmd_complete(SCSIDiskReq *sreq)
{
    VirtIOSCSIReq *req = sreq->opaque;
    VirtIOSCSI *s = req->dev;
    size_t len = req->data_in_len ? req->data_in_len : req->data_out_len;
    size_t xfer = req->data_in_len ? sreq->in_xfer : sreq->out_xfer;

    inflight_remove(s, req);
    if (s->quiesce) {
        req_put(s, req);
        return;
    }
    if (sreq->overrun) {
        /* The buffers could not hold the transfer: nothing was moved. */
        cmd_write_resp(req, VIRTIO_SCSI_S_OVERRUN, 0, (uint32_t)len, NULL, 0);
        req_fill(req, req->resp_size);
        return;
    }
    cmd_write_resp(req, VIRTIO_SCSI_S_OK, sreq->status, (uint32_t)(len - MIN(xfer, len)),
                   sreq->sense, sreq->sense_len);
    req_fill(req, req->resp_size + (uint32_t)sreq->in_xfer);
}

/* Parse and start one command. Returns -1 after a framing fault (device broken). */
static int handle_cmd(VirtIOSCSI *s, VirtIOSCSIReq *req)
{
    uint32_t req_size = VIRTIO_SCSI_CMD_REQ_HDR + s->cdb_size;
    struct iovec *out = req->elem.out_sg, *in = req->elem.in_sg;
    unsigned out_num = req->elem.out_num, in_num = req->elem.in_num;
    uint8_t hdr[VIRTIO_SCSI_CMD_REQ_HDR + SCSI_CDB_MAX];
    size_t acc = 0;
    unsigned k = 0;

    s->stats.cmds++;
    req->resp_size = VIRTIO_SCSI_CMD_RESP_HDR + s->sense_size;
    req->resp_split = UINT32_MAX;
    /* spec 5.6.6.1: header and response must fit; QEMU treats anything less as a fatal driver error. */
    if (iov_size(out, out_num) < req_size) {
        req_bad(req, "command header shorter than 19 + cdb_size bytes");
        return -1;
    }
    if (req->elem.in_len < req->resp_size) {
        req_bad(req, "command response buffer shorter than 12 + sense_size bytes");
        return -1;
    }
    /* Snapshot: the header is read from guest memory once; only the first 16 CDB bytes matter. */
    memset(hdr, 0, sizeof(hdr));
    iov_to_buf(out, out_num, 0, hdr, MIN(sizeof(hdr), req_size));
    iov_trim_front(&out, &out_num, req_size);
    /* Where data-in starts: the entry cut in two is saved, the response is written through it later. */
    while (k < in_num && acc + in[k].iov_len <= req->resp_size) {
        acc += in[k++].iov_len;
    }
    req->resp_split = k;
    if (k < in_num) {
        req->resp_split_iov = in[k];
    }
    iov_trim_front(&in, &in_num, req->resp_size);
    req->data_out_len = iov_size(out, out_num);
    req->data_in_len = iov_size(in, in_num);
    memcpy(&req->tag, hdr + 8, sizeof(req->tag));
    req->tag = le64toh(req->tag);

    if (!lun_decode(s, hdr, &req->lun)) {
        cmd_fail(req, VIRTIO_SCSI_S_BAD_TARGET);
        return 0;
    }
    if (req->data_out_len && req->data_in_len) {
        /* Bidirectional commands need VIRTIO_SCSI_F_INOUT, which is not offered. */
        cmd_fail(req, VIRTIO_SCSI_S_FAILURE);
        return 0;
    }
    memset(&req->sreq, 0, offsetof(SCSIDiskReq, status));
    memcpy(req->sreq.cdb, hdr + VIRTIO_SCSI_CMD_REQ_HDR, MIN(SCSI_CDB_MAX, s->cdb_size));
    req->sreq.cdb_len = MIN(SCSI_CDB_MAX, s->cdb_size);
    req->sreq.lun = req->lun;
    req->sreq.out = out;
    req->sreq.out_cnt = out_num;
    req->sreq.in = in;
    req->sreq.in_cnt = in_num;
    req->sreq.complete = cmd_complete;
    req->sreq.opaque = req;
    inflight_add(s, req);
    scsi_disk_req_submit(s->disk, &req->sreq);
    return 0;
}

static void handle_cmd_queue(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIOSCSI *s = VIRTIO_SCSI(vdev);
    VirtIOSCSIReq *req;

    if (s->disk) {
        blk_io_plug(s->disk->blk);
    }
    /*
     * Pops are bounded by the queue size: completions are only published by
     * the flush below or by the backend's batch callback, never inside this
     * loop, so the driver cannot keep it running.
     */
    do {
        virtio_queue_set_notification(vq, 0);
        while ((req = req_pop(s, vq))) {
            if (handle_cmd(s, req) < 0) {
                break;
            }
        }
        virtio_queue_set_notification(vq, 1);
    } while (!vdev->broken && !virtio_queue_empty(vq));
    if (s->disk) {
        blk_io_unplug(s->disk->blk);
    }
    scsi_flush_queue(s, virtio_get_queue_index(vq));
}

/* ---------------------------------------------------------------------- */
/* Control queue                                                           */

static bool lun_has_tasks(VirtIOSCSI *s, unsigned lun, bool match_tag, uint64_t tag)
{
    for (VirtIOSCSIReq *r = s->inflight_head; r; r = r->next) {
        if (r->lun == lun && (!match_tag || r->tag == tag)) {
            return true;
        }
    }
    return false;
}

/* Let every command in flight finish (and be used) before a TMF's answer. */
static void wait_tasks(VirtIOSCSI *s)
{
    if (s->disk) {
        scsi_disk_drain(s->disk);
    }
    scsi_flush_all(s);
}

static uint8_t handle_tmf(VirtIOSCSI *s, const VirtIOSCSICtrlTMFReq *tmf)
{
    uint32_t subtype = le32toh(tmf->subtype);
    uint64_t tag = le64toh(tmf->tag);
    unsigned lun;

    s->stats.tmfs++;
    if (!lun_decode(s, tmf->lun, &lun)) {
        return VIRTIO_SCSI_S_BAD_TARGET;
    }
    if (subtype != VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET && lun != s->disk->conf.lun) {
        return VIRTIO_SCSI_S_INCORRECT_LUN;
    }
    switch (subtype) {
    case VIRTIO_SCSI_T_TMF_ABORT_TASK:
        /* The task cannot be stopped inside the backend: it completes first, then the TMF does. */
        if (lun_has_tasks(s, lun, true, tag)) {
            wait_tasks(s);
        }
        return VIRTIO_SCSI_S_FUNCTION_COMPLETE;
    case VIRTIO_SCSI_T_TMF_ABORT_TASK_SET:
    case VIRTIO_SCSI_T_TMF_CLEAR_TASK_SET:
    case VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET:
    case VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET:
        wait_tasks(s);
        return VIRTIO_SCSI_S_FUNCTION_COMPLETE;
    case VIRTIO_SCSI_T_TMF_QUERY_TASK:
        return lun_has_tasks(s, lun, true, tag) ? VIRTIO_SCSI_S_FUNCTION_SUCCEEDED
                                                : VIRTIO_SCSI_S_FUNCTION_COMPLETE;
    case VIRTIO_SCSI_T_TMF_QUERY_TASK_SET:
        return lun_has_tasks(s, lun, false, 0) ? VIRTIO_SCSI_S_FUNCTION_SUCCEEDED
                                               : VIRTIO_SCSI_S_FUNCTION_COMPLETE;
    case VIRTIO_SCSI_T_TMF_CLEAR_ACA:           /* NACA is never set: there is no ACA to clear */
    default:
        return VIRTIO_SCSI_S_FUNCTION_REJECTED;
    }
}

/* One control request. Returns -1 after a framing fault (device broken). */
static int handle_ctrl(VirtIOSCSI *s, VirtIOSCSIReq *req)
{
    struct iovec *out = req->elem.out_sg, *in = req->elem.in_sg;
    unsigned out_num = req->elem.out_num, in_num = req->elem.in_num;
    size_t out_len = iov_size(out, out_num);
    uint32_t type;

    if (iov_to_buf(out, out_num, 0, &type, sizeof(type)) < sizeof(type)) {
        req_bad(req, "control request shorter than its type");
        return -1;
    }
    type = le32toh(type);
    if (type == VIRTIO_SCSI_T_TMF) {
        VirtIOSCSICtrlTMFReq tmf;
        uint8_t resp;

        if (out_len < sizeof(tmf) || req->elem.in_len < 1) {
            req_bad(req, "TMF request or response too short");
            return -1;
        }
        iov_to_buf(out, out_num, 0, &tmf, sizeof(tmf));
        resp = handle_tmf(s, &tmf);
        iov_from_buf(in, in_num, 0, &resp, 1);
        req_fill(req, 1);
    } else if (type == VIRTIO_SCSI_T_AN_QUERY || type == VIRTIO_SCSI_T_AN_SUBSCRIBE) {
        VirtIOSCSICtrlANReq an;
        VirtIOSCSICtrlANResp resp;
        unsigned lun;

        if (out_len < sizeof(an) || req->elem.in_len < sizeof(resp)) {
            req_bad(req, "AN request or response too short");
            return -1;
        }
        iov_to_buf(out, out_num, 0, &an, sizeof(an));
        s->stats.ans++;
        /* No asynchronous notification class is supported: event_actual is 0. */
        resp.event_actual = 0;
        resp.response = lun_decode(s, an.lun, &lun) ? VIRTIO_SCSI_S_OK : VIRTIO_SCSI_S_BAD_TARGET;
        iov_from_buf(in, in_num, 0, &resp, sizeof(resp));
        req_fill(req, sizeof(resp));
    } else {
        /* An unknown type has no known response layout: its first writable byte says FAILURE. */
        uint8_t resp = VIRTIO_SCSI_S_FAILURE;
        req_fill(req, (uint32_t)iov_from_buf(in, in_num, 0, &resp, 1));
    }
    return 0;
}

static void handle_ctrl_queue(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIOSCSI *s = VIRTIO_SCSI(vdev);
    VirtIOSCSIReq *req;

    do {
        virtio_queue_set_notification(vq, 0);
        while ((req = req_pop(s, vq))) {
            if (handle_ctrl(s, req) < 0) {
                break;
            }
        }
        virtio_queue_set_notification(vq, 1);
    } while (!vdev->broken && !virtio_queue_empty(vq));
    scsi_flush_queue(s, CTRL_QUEUE);
}

/* ---------------------------------------------------------------------- */
/* Event queue                                                             */

void virtio_scsi_push_event(VirtIOSCSI *s, uint32_t event, uint32_t reason)
{
    VirtIODevice *vdev = &s->parent_obj;
    VirtQueue *vq = virtio_get_queue(vdev, EVENT_QUEUE);
    VirtIOSCSIEvent ev;
    VirtIOSCSIReq *req;

    if (vdev->broken || !(vdev->status & VIRTIO_CONFIG_S_DRIVER_OK)) {
        return;
    }
    req = req_pop(s, vq);
    if (!req) {
        /* spec 5.6.6.3: no buffer, so the event is lost; the next one says so. */
        s->events_dropped = true;
        s->stats.events_dropped++;
        return;
    }
    if (req->elem.out_num || req->elem.in_len < sizeof(ev)) {
        req_bad(req, "event buffer not 16 device-writable bytes");
        return;
    }
    memset(&ev, 0, sizeof(ev));
    if (s->events_dropped) {
        event |= VIRTIO_SCSI_T_EVENTS_MISSED;
        s->events_dropped = false;
    }
    ev.event = htole32(event);
    if (s->disk && event != (VIRTIO_SCSI_T_NO_EVENT | VIRTIO_SCSI_T_EVENTS_MISSED)) {
        unsigned lun = s->disk->conf.lun;
        ev.lun[0] = 1;
        ev.lun[1] = (uint8_t)s->conf.target;
        ev.lun[2] = (uint8_t)(lun >= 256 ? 0x40 | (lun >> 8) : 0);
        ev.lun[3] = (uint8_t)lun;
    }
    ev.reason = htole32(reason);
    iov_from_buf(req->elem.in_sg, req->elem.in_num, 0, &ev, sizeof(ev));
    s->stats.events++;
    req_fill(req, sizeof(ev));
    scsi_flush_queue(s, EVENT_QUEUE);
}

static void handle_event_queue(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIOSCSI *s = VIRTIO_SCSI(vdev);

    /* New buffers: tell the driver what it missed. */
    if (s->events_dropped) {
        virtio_scsi_push_event(s, VIRTIO_SCSI_T_NO_EVENT, 0);
    }
}

void virtio_scsi_resize(VirtIOSCSI *s)
{
    if (!s->disk) {
        return;
    }
    scsi_disk_resize(s->disk);
    if (virtio_vdev_has_feature(&s->parent_obj, VIRTIO_SCSI_F_CHANGE)) {
        /* reason: ASC 0x2a ASCQ 0x09, CAPACITY DATA HAS CHANGED (spec 5.6.6.3.2). */
        virtio_scsi_push_event(s, VIRTIO_SCSI_T_PARAM_CHANGE, 0x2a | 0x09 << 8);
    }
}

/* ---------------------------------------------------------------------- */
/* Life cycle                                                              */

void virtio_scsi_drain(VirtIOSCSI *s)
{
    if (s->disk) {
        scsi_disk_drain(s->disk);
    }
}

static void scsi_reset(VirtIODevice *vdev)
{
    VirtIOSCSI *s = VIRTIO_SCSI(vdev);

    /* Finish every command, but publish nothing: the core resets the rings next. */
    s->quiesce = true;
    virtio_scsi_drain(s);
    s->quiesce = false;
    for (unsigned n = 0; n < vdev->num_queues; n++) {
        virtqueue_batch_reset(&s->queues[n].batch);
    }
    s->events_dropped = false;
    s->sense_size = VIRTIO_SCSI_SENSE_DEFAULT_SIZE;
    s->cdb_size = VIRTIO_SCSI_CDB_DEFAULT_SIZE;
    scsi_update_config(s);
}

static const VirtIODeviceOps virtio_scsi_ops = {
    .reset = scsi_reset,
};

static uint64_t scsi_device_features(const VirtIOSCSIConf *c)
{
    uint64_t f = c->param_change ? BIT(VIRTIO_SCSI_F_CHANGE) : 0;

    /* STYLE.md §7: offer only what the registry lists as implemented. */
    return f & virtio_features_implemented(VIRTIO_ID_SCSI, VIRTIO_FEATURE_DEVICE);
}

bool virtio_scsi_realize(VirtIOSCSI *s, const VirtIOSCSIConf *c, GuestMemory *mem, GError **errp)
{
    VirtIODevice *vdev = &s->parent_obj;
    const char *bad = NULL;

    memset(s, 0, sizeof(*s));
    if (c->num_queues == 0 || c->num_queues > 1024) {
        bad = "num_queues must be 1..1024";
    } else if (c->queue_size < 4 || c->queue_size > VIRTQUEUE_MAX_SIZE || (c->queue_size & (c->queue_size - 1))) {
        bad = "virtqueue_size must be a power of two, 4..32768";
    } else if (c->seg_max > c->queue_size - 2) {
        bad = "seg-max must not exceed virtqueue_size - 2";
    } else if (c->max_target > VIRTIO_SCSI_MAX_TARGET || c->target > c->max_target) {
        bad = "scsi-id must be <= max_target <= 255";
    } else if (c->max_sectors == 0 || c->cmd_per_lun == 0) {
        bad = "max_sectors and cmd_per_lun must be > 0";
    }
    if (bad) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "virtio-scsi: %s", bad);
        return false;
    }
    if (virtio_init(vdev, "virtio-scsi", VIRTIO_ID_SCSI, sizeof(VirtIOSCSIConfig), mem,
                    REQ_QUEUE0 + c->num_queues, c->queue_size) < 0) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "virtio-scsi: virtio_init failed");
        return false;
    }
    s->conf = *c;
    s->disk = c->disk;
    s->sense_size = VIRTIO_SCSI_SENSE_DEFAULT_SIZE;
    s->cdb_size = VIRTIO_SCSI_CDB_DEFAULT_SIZE;
    s->queues = g_new0(VirtIOSCSIQueue, vdev->num_queues);
    vdev->ops = &virtio_scsi_ops;
    vdev->host_features = virtio_ring_features_select(c->in_order, c->packed, c->event_idx, c->indirect_desc) |
                          scsi_device_features(c);
    virtio_queue_set_handler(vdev, CTRL_QUEUE, handle_ctrl_queue);
    virtio_queue_set_handler(vdev, EVENT_QUEUE, handle_event_queue);
    for (unsigned n = REQ_QUEUE0; n < vdev->num_queues; n++) {
        virtio_queue_set_handler(vdev, n, handle_cmd_queue);
        /* Commands whose buffers were written in full may be published as one entry (IN_ORDER). */
        virtio_queue_set_batch(virtio_get_queue(vdev, n), c->used_batch);
    }
    scsi_update_config(s);
    if (s->disk) {
        blk_set_batch_done(s->disk->blk, scsi_flush_all, s);
    }
    return true;
}

void virtio_scsi_unrealize(VirtIOSCSI *s)
{
    if (!s->queues) {
        return;
    }
    s->quiesce = true;
    virtio_scsi_drain(s);
    if (s->disk) {
        blk_set_batch_done(s->disk->blk, NULL, NULL);
    }
    virtio_cleanup(&s->parent_obj);
    virtio_req_pool_drain(&s->req_pool);
    g_free(s->queues);
    s->queues = NULL;
}

bool virtio_scsi_attach_disk(VirtIOSCSI *s, SCSIDisk *disk, uint32_t target, GError **errp)
{
    if (s->disk) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                    "virtio-scsi: the adapter already has its unit (vdm: one per adapter)");
        return false;
    }
    if (target > s->conf.max_target) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "virtio-scsi: scsi-id %u is above max_target %u", target, s->conf.max_target);
        return false;
    }
    s->disk = disk;
    s->conf.target = target;
    blk_set_batch_done(disk->blk, scsi_flush_all, s);
    return true;
}

void virtio_scsi_detach_disk(VirtIOSCSI *s)
{
    if (!s->disk) {
        return;
    }
    /* Its commands complete (and are used) first: nothing in flight may name a missing unit. */
    virtio_scsi_drain(s);
    blk_set_batch_done(s->disk->blk, NULL, NULL);
    s->disk = NULL;
}

void virtio_scsi_get_stats(const VirtIOSCSI *s, VirtIOSCSIStats *stats)
{
    *stats = s->stats;
}
