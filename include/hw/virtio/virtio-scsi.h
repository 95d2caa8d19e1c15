/*
 * virtio-scsi: the SCSI host adapter model (virtio spec 5.6) on the virtio
 * core, with one scsi-hd unit (hw/scsi/scsi-disk.c) at a target and LUN.
 *
 * No transport code: a host (virtio-scsi-pci, or a vhost-user backend)
 * owns guest memory and the transport ops, calls virtio_scsi_realize and
 * drives the embedded VirtIODevice through the core's API.
 *
 * Queues: 0 control, 1 event, 2.. request queues (num_queues of them).
 *
 * Context: the main-loop thread that owns the disk's BlockBackend.
 */
#ifndef HW_VIRTIO_VIRTIO_SCSI_H
#define HW_VIRTIO_VIRTIO_SCSI_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "hw/scsi/scsi.h"
#include "hw/virtio/virtio.h"
#include "hw/virtio/virtio-req-pool.h"
#include "hw/virtio/virtqueue-batch.h"

#define VIRTIO_ID_SCSI 8

/* Feature bits (spec 5.6.3). */
#define VIRTIO_SCSI_F_INOUT         0
#define VIRTIO_SCSI_F_HOTPLUG       1
#define VIRTIO_SCSI_F_CHANGE        2
#define VIRTIO_SCSI_F_T10_PI        3

/* Defaults and limits (QEMU's virtio-scsi, Linux's driver). */
#define VIRTIO_SCSI_CDB_DEFAULT_SIZE    32
#define VIRTIO_SCSI_SENSE_DEFAULT_SIZE  96
#define VIRTIO_SCSI_CDB_SIZE_MAX        255     /* driver-written cdb_size must stay below 256 */
#define VIRTIO_SCSI_SENSE_SIZE_MAX      65535   /* ... and sense_size below 65536 */
#define VIRTIO_SCSI_MAX_CHANNEL         0
#define VIRTIO_SCSI_MAX_TARGET          255
#define VIRTIO_SCSI_MAX_LUN             16383

/* Response codes (spec 5.6.6.1). */
#define VIRTIO_SCSI_S_OK                0
#define VIRTIO_SCSI_S_OVERRUN           1
#define VIRTIO_SCSI_S_ABORTED           2
#define VIRTIO_SCSI_S_BAD_TARGET        3
#define VIRTIO_SCSI_S_RESET             4
#define VIRTIO_SCSI_S_BUSY              5
#define VIRTIO_SCSI_S_TRANSPORT_FAILURE 6
#define VIRTIO_SCSI_S_TARGET_FAILURE    7
#define VIRTIO_SCSI_S_NEXUS_FAILURE     8
#define VIRTIO_SCSI_S_FAILURE           9
#define VIRTIO_SCSI_S_FUNCTION_COMPLETE 0
#define VIRTIO_SCSI_S_FUNCTION_SUCCEEDED 10
#define VIRTIO_SCSI_S_FUNCTION_REJECTED 11
#define VIRTIO_SCSI_S_INCORRECT_LUN     12

/* Control queue request types and TMF subtypes (spec 5.6.6.2). */
#define VIRTIO_SCSI_T_TMF               0
#define VIRTIO_SCSI_T_AN_QUERY          1
#define VIRTIO_SCSI_T_AN_SUBSCRIBE      2
#define VIRTIO_SCSI_T_TMF_ABORT_TASK            0
#define VIRTIO_SCSI_T_TMF_ABORT_TASK_SET        1
#define VIRTIO_SCSI_T_TMF_CLEAR_ACA             2
#define VIRTIO_SCSI_T_TMF_CLEAR_TASK_SET        3
#define VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET       4
#define VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET    5
#define VIRTIO_SCSI_T_TMF_QUERY_TASK            6
#define VIRTIO_SCSI_T_TMF_QUERY_TASK_SET        7

/* Events (spec 5.6.6.3). */
#define VIRTIO_SCSI_T_EVENTS_MISSED     0x80000000u
#define VIRTIO_SCSI_T_NO_EVENT          0
#define VIRTIO_SCSI_T_TRANSPORT_RESET   1
#define VIRTIO_SCSI_T_ASYNC_NOTIFY      2
#define VIRTIO_SCSI_T_PARAM_CHANGE      3

/* Task attributes. */
#define VIRTIO_SCSI_S_SIMPLE            0

/* Request header, the first readable bytes of a command (cdb has cdb_size bytes). */
typedef struct __attribute__((packed)) VirtIOSCSICmdReq {
    uint8_t lun[8];
    uint64_t tag;               /* "id" */
    uint8_t task_attr;
    uint8_t prio;
    uint8_t crn;
    uint8_t cdb[VIRTIO_SCSI_CDB_DEFAULT_SIZE];
} VirtIOSCSICmdReq;
#define VIRTIO_SCSI_CMD_REQ_HDR 19      /* bytes before the CDB */

/* Response, the first writable bytes (sense has sense_size bytes). */
typedef struct __attribute__((packed)) VirtIOSCSICmdResp {
    uint32_t sense_len;
    uint32_t resid;
    uint16_t status_qualifier;
    uint8_t status;
    uint8_t response;
    uint8_t sense[VIRTIO_SCSI_SENSE_DEFAULT_SIZE];
} VirtIOSCSICmdResp;
#define VIRTIO_SCSI_CMD_RESP_HDR 12     /* bytes before the sense data */

typedef struct __attribute__((packed)) VirtIOSCSICtrlTMFReq {
    uint32_t type;
    uint32_t subtype;
    uint8_t lun[8];
    uint64_t tag;
} VirtIOSCSICtrlTMFReq;

typedef struct __attribute__((packed)) VirtIOSCSICtrlANReq {
    uint32_t type;
    uint8_t lun[8];
    uint32_t event_requested;
} VirtIOSCSICtrlANReq;

typedef struct __attribute__((packed)) VirtIOSCSICtrlANResp {
    uint32_t event_actual;
    uint8_t response;
} VirtIOSCSICtrlANResp;

typedef struct __attribute__((packed)) VirtIOSCSIEvent {
    uint32_t event;
    uint8_t lun[8];
    uint32_t reason;
} VirtIOSCSIEvent;

/* Configuration space (spec 5.6.4), little-endian. */
typedef struct __attribute__((packed)) VirtIOSCSIConfig {
    uint32_t num_queues;
    uint32_t seg_max;
    uint32_t max_sectors;
    uint32_t cmd_per_lun;
    uint32_t event_info_size;
    uint32_t sense_size;        /* driver-writable */
    uint32_t cdb_size;          /* driver-writable */
    uint16_t max_channel;
    uint16_t max_target;
    uint32_t max_lun;
} VirtIOSCSIConfig;

/* Device properties, named and defaulted as QEMU's virtio-scsi (see virtio_scsi_conf_init). */
typedef struct VirtIOSCSIConf {
    SCSIDisk *disk;             /* the unit, not owned; NULL: an adapter with no targets */
    uint32_t target;            /* "scsi-id": the unit's target */
    uint32_t num_queues;        /* "num_queues" / "num-queues": request queues, default 1 */
    uint32_t queue_size;        /* "virtqueue_size" / "queue-size", default 256 */
    uint32_t seg_max;           /* "seg-max": 0 = queue-size - 2 */
    uint32_t max_sectors;       /* "max_sectors", default 0xffff */
    uint32_t cmd_per_lun;       /* "cmd_per_lun", default 128 */
    uint32_t max_target;        /* "max_target", default 255 */
    bool param_change;          /* "param_change": offer VIRTIO_SCSI_F_CHANGE, default on */
    bool in_order;              /* "in_order", default off (as QEMU) */
    bool packed;                /* "packed", default off */
    bool event_idx;             /* "event_idx", default on */
    bool indirect_desc;         /* "indirect_desc", default on */
    bool used_batch;            /* "used-batch": in-order batch publication, default on */
} VirtIOSCSIConf;

typedef struct VirtIOSCSIStats {
    uint64_t cmds, tmfs, ans, events, events_dropped;
    uint64_t resp[16];          /* commands by VIRTIO_SCSI_S_* response */
    uint64_t max_in_flight;
} VirtIOSCSIStats;

typedef struct VirtIOSCSIQueue {
    VirtQueueBatch batch;
} VirtIOSCSIQueue;

typedef struct VirtIOSCSI {
    VirtIODevice parent_obj;    /* first: VIRTIO_SCSI() casts from it */
    VirtIOSCSIConf conf;
    SCSIDisk *disk;
    VirtIOSCSIQueue *queues;    /* one per virtqueue (control, event, requests) */
    uint32_t cdb_size, sense_size;  /* as the driver set them */
    bool events_dropped;        /* an event found no buffer: report EVENTS_MISSED */
    bool quiesce;               /* completions must not touch the rings (reset in progress) */
    unsigned in_flight;
    struct VirtIOSCSIReq *inflight_head;    /* commands in flight, oldest first (TMF lookups) */
    struct VirtIOSCSIReq *inflight_tail;
    VirtIOReqPool req_pool;     /* no allocation per command once warm */
    VirtIOSCSIStats stats;
} VirtIOSCSI;

static inline VirtIOSCSI *VIRTIO_SCSI(VirtIODevice *vdev)
{
    return (VirtIOSCSI *)vdev;
}

void virtio_scsi_conf_init(VirtIOSCSIConf *conf);
/* Set a property by its QEMU name. False with @errp set for an unknown name or a bad value. */
bool virtio_scsi_conf_set(VirtIOSCSIConf *conf, const char *name, const char *value, GError **errp);
void virtio_scsi_conf_list(void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                           void *opaque);

/* Set up @s (queues, config, features) with guest memory @mem. False with @errp set if bad. */
bool virtio_scsi_realize(VirtIOSCSI *s, const VirtIOSCSIConf *conf, GuestMemory *mem, GError **errp);
/* Drain, then free what realize allocated (the disk is the caller's). */
void virtio_scsi_unrealize(VirtIOSCSI *s);
/* Finish every command in flight, publishing their completions. */
void virtio_scsi_drain(VirtIOSCSI *s);

/*
 * A driver write to the configuration space: only sense_size and cdb_size
 * are writable (spec 5.6.4); other fields -EPERM, outside -EINVAL. A value
 * out of bounds is a driver fault (virtio_error, -EINVAL).
 */
int virtio_scsi_set_config(VirtIOSCSI *s, uint32_t offset, const uint8_t *data, uint32_t len);

/*
 * Give the adapter its unit after realize (the device host plugs scsi-hd
 * after virtio-scsi-pci), at @target; @disk stays the caller's. Before the
 * driver scans (no hotplug events). False with @errp set when the adapter
 * has a unit already or @target is above max_target.
 */
bool virtio_scsi_attach_disk(VirtIOSCSI *s, SCSIDisk *disk, uint32_t target, GError **errp);
/* Take the unit away: its commands in flight complete first. */
void virtio_scsi_detach_disk(VirtIOSCSI *s);

/* The disk image changed size: new capacity, and a PARAM_CHANGE event with CHANGE negotiated. */
void virtio_scsi_resize(VirtIOSCSI *s);

/*
 * Queue an event on the event queue (lun: the disk's). Without a buffer the
 * event is dropped and the next event carries VIRTIO_SCSI_T_EVENTS_MISSED.
 */
void virtio_scsi_push_event(VirtIOSCSI *s, uint32_t event, uint32_t reason);

void virtio_scsi_get_stats(const VirtIOSCSI *s, VirtIOSCSIStats *stats);

#endif
