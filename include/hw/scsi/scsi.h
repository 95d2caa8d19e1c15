/*
 * SCSI disk emulation: one logical unit (SBC direct-access block device) on
 * a BlockBackend, as a transport (virtio-scsi) sees it: a CDB and data
 * buffers in, a SCSI status, fixed-format sense data and a transfer count
 * out.
 *
 * Commands (SPC-4 / SBC-3): INQUIRY (standard, VPD 0x00 0x80 0x83 0xb0
 * 0xb2), TEST UNIT READY, READ CAPACITY 10/16, READ/WRITE 6/10/12/16,
 * SYNCHRONIZE CACHE 10/16, MODE SENSE 6/10 (pages 0x08, 0x0a, 0x3f),
 * REQUEST SENSE, REPORT LUNS, UNMAP, WRITE SAME 10/16, START STOP UNIT,
 * PREVENT ALLOW MEDIUM REMOVAL, VERIFY 10/16 (BYTCHK 0). Anything else is
 * CHECK CONDITION, ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE.
 *
 * Context: the thread that owns the BlockBackend; completions run there.
 */
#ifndef HW_SCSI_SCSI_H
#define HW_SCSI_SCSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <glib.h>

#include "block/block-backend.h"

/* SCSI status codes (SAM-5). */
#define SCSI_STATUS_GOOD            0x00
#define SCSI_STATUS_CHECK_CONDITION 0x02
#define SCSI_STATUS_BUSY            0x08

/* Sense keys (SPC-4 4.5.6). */
#define SCSI_SENSE_NO_SENSE         0x0
#define SCSI_SENSE_NOT_READY        0x2
#define SCSI_SENSE_MEDIUM_ERROR     0x3
#define SCSI_SENSE_HARDWARE_ERROR   0x4
#define SCSI_SENSE_ILLEGAL_REQUEST  0x5
#define SCSI_SENSE_UNIT_ATTENTION   0x6
#define SCSI_SENSE_DATA_PROTECT     0x7
#define SCSI_SENSE_ABORTED_COMMAND  0xb

/* Operation codes. */
#define TEST_UNIT_READY             0x00
#define REQUEST_SENSE               0x03
#define READ_6                      0x08
#define WRITE_6                     0x0a
#define INQUIRY                     0x12
#define MODE_SENSE_6                0x1a
#define START_STOP                  0x1b
#define ALLOW_MEDIUM_REMOVAL        0x1e
#define READ_CAPACITY_10            0x25
#define READ_10                     0x28
#define WRITE_10                    0x2a
#define VERIFY_10                   0x2f
#define SYNCHRONIZE_CACHE_10        0x35
#define WRITE_SAME_10               0x41
#define UNMAP                       0x42
#define MODE_SENSE_10               0x5a
#define READ_16                     0x88
#define WRITE_16                    0x8a
#define VERIFY_16                   0x8f
#define SYNCHRONIZE_CACHE_16        0x91
#define WRITE_SAME_16               0x93
#define SERVICE_ACTION_IN_16        0x9e
#define SAI_READ_CAPACITY_16        0x10
#define REPORT_LUNS                 0xa0
#define READ_12                     0xa8
#define WRITE_12                    0xaa

/* Fixed-format sense data (SPC-4 4.5.3): 18 bytes. */
#define SCSI_SENSE_FIXED_LEN        18
/* Longest CDB the disk decodes (16-byte commands; group 3 variable-length CDBs are refused). */
#define SCSI_CDB_MAX                16

#define SCSI_DISK_SERIAL_MAX        36

typedef struct SCSIDiskConf {
    BlockBackend *blk;          /* not owned */
    char serial[SCSI_DISK_SERIAL_MAX + 1];  /* "serial": VPD 0x80 / 0x83 */
    char vendor[9];             /* "vendor": INQUIRY T10 vendor id, default "VDM" */
    char product[17];           /* "product", default "VDM HARDDISK" */
    char version[5];            /* "ver", default "0.1" */
    uint32_t lun;               /* "lun": this unit's LUN (0..16383) */
    uint32_t logical_block_size;    /* "logical_block_size": 512 or 4096 */
    uint32_t max_unmap_blocks;      /* VPD 0xb0 MAXIMUM UNMAP LBA COUNT */
    uint32_t max_unmap_descs;       /* VPD 0xb0 MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT */
    uint32_t max_write_same_blocks; /* VPD 0xb0 MAXIMUM WRITE SAME LENGTH */
    uint32_t max_transfer_blocks;   /* VPD 0xb0 MAXIMUM TRANSFER LENGTH (0: none) */
    bool read_only;             /* "read-only": WP in mode data, writes refused */
    bool discard;               /* "discard": logical block provisioning (UNMAP, WRITE SAME UNMAP) */
    bool write_cache;           /* "write-cache": WCE; off = every write is made stable before GOOD */
} SCSIDiskConf;

typedef struct SCSIDiskStats {
    uint64_t cmds, reads, writes, syncs, unmaps, write_sames;
    uint64_t bytes_read, bytes_written;
    uint64_t check_conditions;
    uint64_t stable_writes;     /* writes flushed before GOOD (FUA, or write cache off) */
} SCSIDiskStats;

typedef struct SCSIDisk {
    SCSIDiskConf conf;
    BlockBackend *blk;
    uint64_t nb_blocks;         /* capacity in logical blocks */
    bool read_only;
    unsigned in_flight;         /* requests submitted and not yet completed */
    SCSIDiskStats stats;
} SCSIDisk;

typedef struct SCSIDiskReq SCSIDiskReq;
/* Called exactly once per submitted request; may run before scsi_disk_req_submit returns. */
typedef void SCSIDiskReqComplete(SCSIDiskReq *req);

struct SCSIDiskReq {
    /* Set by the transport before submit. */
    uint8_t cdb[SCSI_CDB_MAX];
    unsigned cdb_len;           /* bytes of cdb the transport carried (may be shorter than the opcode needs) */
    unsigned lun;               /* addressed LUN (need not exist: the target answers for it) */
    struct iovec *out;          /* data-out (driver to device); the disk may trim these arrays */
    unsigned out_cnt;
    struct iovec *in;           /* data-in (device to driver) */
    unsigned in_cnt;
    SCSIDiskReqComplete *complete;
    void *opaque;
    /* Results, valid in complete(). */
    uint8_t status;             /* SCSI_STATUS_* */
    bool overrun;               /* the data buffer was too small for the command: nothing transferred */
    uint8_t sense[SCSI_SENSE_FIXED_LEN];
    unsigned sense_len;         /* 0 or SCSI_SENSE_FIXED_LEN */
    size_t in_xfer;             /* data-in bytes written */
    size_t out_xfer;            /* data-out bytes consumed */
    /* Private to scsi-disk.c. */
    SCSIDisk *disk;
    unsigned pending;           /* backend operations running */
    int error;
    bool flush_after;           /* FUA or write cache off: make the write stable before GOOD */
    void *bounce;
    struct iovec *bounce_iov;
    uint64_t bytes;
};

/* Defaults (QEMU's scsi-hd where it has them). */
void scsi_disk_conf_init(SCSIDiskConf *conf);
/* Set a property by name ("serial", "read-only", "discard", ...). False with @errp set if bad. */
bool scsi_disk_conf_set(SCSIDiskConf *conf, const char *name, const char *value, GError **errp);
void scsi_disk_conf_list(void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                         void *opaque);

bool scsi_disk_realize(SCSIDisk *d, const SCSIDiskConf *conf, GError **errp);
/* Finish every request in flight (their completions run). */
void scsi_disk_drain(SCSIDisk *d);
void scsi_disk_unrealize(SCSIDisk *d);
/* The image size changed: take the new capacity. */
void scsi_disk_resize(SCSIDisk *d);

/*
 * Run one command. req->complete runs exactly once, with the status, sense
 * and transfer counts set, on the BlockBackend's thread (possibly before
 * this returns). A LUN other than the disk's gets what a target gives for
 * a LUN it lacks: INQUIRY with peripheral qualifier 3, REPORT LUNS, and
 * LOGICAL UNIT NOT SUPPORTED for the rest.
 */
void scsi_disk_req_submit(SCSIDisk *d, SCSIDiskReq *req);

/* Fill @sense (SCSI_SENSE_FIXED_LEN bytes) as fixed-format current sense data. */
void scsi_build_sense(uint8_t *sense, uint8_t key, uint8_t asc, uint8_t ascq);

/* CDB length for an opcode from its group code (SPC-4 4.2.5.1); 0 for groups vdm does not decode. */
unsigned scsi_cdb_length(uint8_t opcode);

#endif
