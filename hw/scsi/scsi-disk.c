/*
 * SCSI disk emulation (SBC-3 direct-access block device on a BlockBackend).
 *
 * Every CDB field is decoded from a copy the transport made, lengths and LBA
 * ranges are checked before any backend call (written so nothing can
 * overflow), and every failure is a CHECK CONDITION with fixed-format
 * sense data. Data-in for small commands (INQUIRY, MODE SENSE, ...) is built
 * in a local buffer and copied up to the allocation length and the driver's
 * buffer; block I/O goes straight between the driver's buffers and the
 * backend, which may finish requests in any order.
 *
 * Context: the BlockBackend's thread.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "hw/qdev-properties.h"
#include "hw/scsi/scsi.h"
#include "qemu/iov.h"

/* Additional sense codes (asc << 8 | ascq), SPC-4 annex D. */
#define ASC_NO_ADDITIONAL_SENSE     0x0000
#define ASC_INVALID_OPCODE          0x2000
#define ASC_LBA_OUT_OF_RANGE        0x2100
#define ASC_INVALID_FIELD_IN_CDB    0x2400
#define ASC_LUN_NOT_SUPPORTED       0x2500
#define ASC_INVALID_PARAM_FIELD     0x2600
#define ASC_PARAM_LIST_LENGTH_ERROR 0x1a00
#define ASC_WRITE_PROTECTED         0x2700
#define ASC_SAVING_PARAMS_UNSUP     0x3900
#define ASC_WRITE_ERROR             0x0c00
#define ASC_UNRECOVERED_READ_ERROR  0x1100
#define ASC_IO_ERROR                0x0000

/* INQUIRY / VPD */
#define TYPE_DISK                   0x00
#define TYPE_NO_LUN                 0x7f    /* qualifier 3, type 0x1f: no unit at this LUN */
#define INQUIRY_VERSION_SPC4        0x06

/* Largest data-in a non-I/O command builds (REPORT LUNS, MODE SENSE all pages, VPD). */
#define SMALL_BUF                   256
/* WRITE SAME with a non-zero block: written from a bounce buffer of this many bytes at most. */
#define WRITE_SAME_BOUNCE           (256 * 1024)

/* ---------------------------------------------------------------------- */
/* Properties                                                              */

#define PROP(name_, type_, field_, desc_) DEFINE_PROP((name_), PROP_TYPE_##type_, SCSIDiskConf, field_, (desc_))

static const Property disk_props[] = {
    PROP("serial", STRING, serial, "unit serial number (VPD 0x80, at most 36 bytes)"),
    PROP("vendor", STRING, vendor, "T10 vendor identification (8 bytes)"),
    PROP("product", STRING, product, "product identification (16 bytes)"),
    PROP("ver", STRING, version, "product revision level (4 bytes)"),
    PROP("lun", UINT32, lun, "logical unit number (0..16383)"),
    PROP("logical_block_size", UINT32, logical_block_size, "block size: 512 or 4096"),
    PROP("read-only", BOOL, read_only, "write protect the unit"),
    PROP("discard", BOOL, discard, "logical block provisioning: UNMAP and WRITE SAME with UNMAP"),
    PROP("write-cache", BOOL, write_cache, "volatile write cache (WCE)"),
    PROP("max-unmap-blocks", UINT32, max_unmap_blocks, "blocks per UNMAP / WRITE SAME UNMAP"),
    PROP("max-unmap-descs", UINT32, max_unmap_descs, "block descriptors per UNMAP"),
    PROP("max-write-same-blocks", UINT32, max_write_same_blocks, "blocks per WRITE SAME"),
    PROP("max-transfer-blocks", UINT32, max_transfer_blocks, "blocks per READ/WRITE (0: no limit)"),
};

void scsi_disk_conf_init(SCSIDiskConf *conf)
{
    memset(conf, 0, sizeof(*conf));
    strcpy(conf->vendor, "VDM");
    strcpy(conf->product, "VDM HARDDISK");
    strcpy(conf->version, "0.1");
    conf->logical_block_size = 512;
    conf->max_unmap_blocks = 0x400000;     /* 2 GiB of 512-byte blocks */
    conf->max_unmap_descs = 255;
    conf->max_write_same_blocks = 0x400000;
    conf->discard = true;
    conf->write_cache = true;
}

bool scsi_disk_conf_set(SCSIDiskConf *conf, const char *name, const char *value, GError **errp)
{
    return qdev_prop_set(conf, disk_props, G_N_ELEMENTS(disk_props), "scsi-hd", name, value, errp);
}

void scsi_disk_conf_list(void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                         void *opaque)
{
    qdev_prop_list(disk_props, G_N_ELEMENTS(disk_props), fn, opaque);
}

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

static uint16_t be16_at(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32_at(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64_at(const uint8_t *p)
{
    return (uint64_t)be32_at(p) << 32 | be32_at(p + 4);
}

static void put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    put_be16(p, (uint16_t)(v >> 16));
    put_be16(p + 2, (uint16_t)v);
}

static void put_be64(uint8_t *p, uint64_t v)
{
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}

/* Copy @s into @p as a space-padded ASCII field of @len bytes (SPC-4 4.4.1). */
static void put_ascii(uint8_t *p, const char *s, size_t len)
{
    size_t n = strnlen(s, len);

    memset(p, ' ', len);
    memcpy(p, s, n);
}

unsigned scsi_cdb_length(uint8_t opcode)
{
    switch (opcode >> 5) {
    case 0:
        return 6;
    case 1:
    case 2:
        return 10;
    case 4:
        return 16;
    case 5:
        return 12;
    default:
        return 0;   /* 3: variable length; 6, 7: vendor specific */
    }
}

void scsi_build_sense(uint8_t *sense, uint8_t key, uint8_t asc, uint8_t ascq)
{
    memset(sense, 0, SCSI_SENSE_FIXED_LEN);
    sense[0] = 0x70;                            /* current error, fixed format */
    sense[2] = key & 0xf;
    sense[7] = SCSI_SENSE_FIXED_LEN - 8;        /* additional sense length */
    sense[12] = asc;
    sense[13] = ascq;
}

static void req_done(SCSIDiskReq *req)
{
    SCSIDisk *d = req->disk;

    g_free(req->bounce);
    req->bounce = NULL;
    g_free(req->bounce_iov);
    req->bounce_iov = NULL;
    d->in_flight--;
    req->complete(req);
}

static void req_good(SCSIDiskReq *req)
{
    req->status = SCSI_STATUS_GOOD;
    req_done(req);
}

static void req_check(SCSIDiskReq *req, uint8_t key, unsigned asc)
{
    req->status = SCSI_STATUS_CHECK_CONDITION;
    scsi_build_sense(req->sense, key, (uint8_t)(asc >> 8), (uint8_t)asc);
    req->sense_len = SCSI_SENSE_FIXED_LEN;
    req->disk->stats.check_conditions++;
    req_done(req);
}

static void req_illegal(SCSIDiskReq *req, unsigned asc)
{
    req_check(req, SCSI_SENSE_ILLEGAL_REQUEST, asc);
}

/* Return @len bytes of @buf as data-in, cut to @alloc (the CDB's allocation length) and the buffer. */
static void req_data_in(SCSIDiskReq *req, const uint8_t *buf, size_t len, size_t alloc)
{
    req->in_xfer = iov_from_buf(req->in, req->in_cnt, 0, buf, MIN(len, alloc));
    req_good(req);
}

/* Keep only the first @bytes of @iov (the rest of the driver's buffer is left alone). */
static void iov_cut(struct iovec *iov, unsigned *cnt, size_t bytes)
{
    unsigned i;

    for (i = 0; i < *cnt && bytes; i++) {
        if (iov[i].iov_len > bytes) {
            iov[i].iov_len = bytes;
        }
        bytes -= iov[i].iov_len;
    }
    *cnt = i;
}

/* Is [lba, lba + nb) inside the unit? Written so that nothing overflows. */
static bool lba_ok(const SCSIDisk *d, uint64_t lba, uint64_t nb)
{
    return lba <= d->nb_blocks && nb <= d->nb_blocks - lba;
}

/* ---------------------------------------------------------------------- */
/* INQUIRY                                                                 */

static size_t inquiry_standard(SCSIDiskReq *req, uint8_t *b, bool present)
{
    SCSIDisk *d = req->disk;

    memset(b, 0, 36);
    b[0] = present ? TYPE_DISK : TYPE_NO_LUN;
    b[2] = INQUIRY_VERSION_SPC4;
    b[3] = 0x02 | 0x10;                         /* response data format 2, HISUP */
    b[4] = 36 - 5;                              /* additional length */
    b[7] = 0x02;                                /* CMDQUE: tagged queueing */
    put_ascii(b + 8, d->conf.vendor, 8);
    put_ascii(b + 16, d->conf.product, 16);
    put_ascii(b + 32, d->conf.version, 4);
    return 36;
}

/* VPD page @page into @b; 0 when the page is not supported. */
static size_t inquiry_vpd(SCSIDisk *d, uint8_t page, uint8_t *b)
{
    static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb2 };
    size_t n = 4, slen = strnlen(d->conf.serial, SCSI_DISK_SERIAL_MAX);

    memset(b, 0, SMALL_BUF);
    b[0] = TYPE_DISK;
    b[1] = page;
    switch (page) {
    case 0x00:                                  /* supported VPD pages */
        memcpy(b + 4, pages, sizeof(pages));
        n += sizeof(pages);
        break;
    case 0x80:                                  /* unit serial number */
        memcpy(b + 4, d->conf.serial, slen);
        n += slen;
        break;
    case 0x83:                                  /* device identification */
        /* One T10 vendor ID designator: vendor (8) + serial, ASCII, associated with the LU. */
        b[4] = 0x02;                            /* code set ASCII */
        b[5] = 0x01;                            /* association LU, type T10 vendor id */
        b[7] = (uint8_t)(8 + slen);
        put_ascii(b + 8, d->conf.vendor, 8);
        memcpy(b + 16, d->conf.serial, slen);
        n += 4 + 8 + slen;
        break;
    case 0xb0:                                  /* block limits, SBC-3 6.5.3 */
        b[4] = 0x01;                            /* WSNZ: WRITE SAME with 0 blocks is refused */
        put_be32(b + 8, d->conf.max_transfer_blocks);
        if (d->conf.discard) {
            put_be32(b + 20, d->conf.max_unmap_blocks);
            put_be32(b + 24, d->conf.max_unmap_descs);
            put_be32(b + 28, 1);                /* optimal unmap granularity */
        }
        put_be64(b + 36, d->conf.max_write_same_blocks);
        n = 64;
        break;
    case 0xb2:                                  /* logical block provisioning, SBC-3 6.5.13 */
        if (d->conf.discard) {
            /* LBPU (UNMAP), LBPWS, LBPWS10; LBPRZ: unmapped blocks read back as zeros (holes). */
            b[5] = 0x80 | 0x40 | 0x20 | 0x04;
            b[6] = 0x02;                        /* thin provisioned */
        }
        n = 8;
        break;
    default:
        return 0;
    }
    put_be16(b + 2, (uint16_t)(n - 4));
    return n;
}

static void cmd_inquiry(SCSIDiskReq *req, bool present)
{
    const uint8_t *cdb = req->cdb;
    uint8_t b[SMALL_BUF];
    size_t alloc = be16_at(cdb + 3), n;

    if (!(cdb[1] & 0x01)) {
        /* SPC-4 6.6: PAGE CODE must be 0 without EVPD. */
        if (cdb[2]) {
            req_illegal(req, ASC_INVALID_FIELD_IN_CDB);
            return;
        }
        n = inquiry_standard(req, b, present);
        req_data_in(req, b, n, alloc);
        return;
    }
    if (!present) {
        req_illegal(req, ASC_LUN_NOT_SUPPORTED);
        return;
    }
    n = inquiry_vpd(req->disk, cdb[2], b);
    if (!n) {
        req_illegal(req, ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    req_data_in(req, b, n, alloc);
}

/* ---------------------------------------------------------------------- */
/* Capacity, mode pages, LUNs, sense                                       */

static void cmd_read_capacity_10(SCSIDiskReq *req)
{
    SCSIDisk *d = req->disk;
    uint8_t b[8];
    uint64_t last = d->nb_blocks ? d->nb_blocks - 1 : 0;

    /* SBC-3 5.15: too big for 32 bits is 0xffffffff (then READ CAPACITY 16). */
    put_be32(b, last > UINT32_MAX ? UINT32_MAX : (uint32_t)last);
    put_be32(b + 4, d->conf.logical_block_size);
    req_data_in(req, b, sizeof(b), sizeof(b));
}

static void cmd_read_capacity_16(SCSIDiskReq *req)
{
    SCSIDisk *d = req->disk;
    uint8_t b[32];

    memset(b, 0, sizeof(b));
    put_be64(b, d->nb_blocks ? d->nb_blocks - 1 : 0);
    put_be32(b + 8, d->conf.logical_block_size);
    if (d->conf.discard) {
        b[14] = 0x80 | 0x40;                    /* LBPME, LBPRZ */
    }
    req_data_in(req, b, sizeof(b), be32_at(req->cdb + 10));
}

/* One mode page for page control @pc (0 current, 1 changeable, 2 default). Returns its length. */
static size_t mode_page(SCSIDisk *d, uint8_t page, unsigned pc, uint8_t *p)
{
    switch (page) {
    case 0x08:                                  /* caching, SBC-3 6.4.5 */
        memset(p, 0, 20);
        p[0] = 0x08;
        p[1] = 0x12;
        if (pc != 1 && d->conf.write_cache) {
            p[2] = 0x04;                        /* WCE (not changeable: no MODE SELECT) */
        }
        return 20;
    case 0x0a:                                  /* control, SPC-4 7.5.8 */
        memset(p, 0, 12);
        p[0] = 0x0a;
        p[1] = 0x0a;
        return 12;
    default:
        return 0;
    }
}

static void cmd_mode_sense(SCSIDiskReq *req)
{
    SCSIDisk *d = req->disk;
    const uint8_t *cdb = req->cdb;
    bool ten = cdb[0] == MODE_SENSE_10;
    bool dbd = cdb[1] & 0x08, llbaa = ten && (cdb[1] & 0x10);
    unsigned pc = cdb[2] >> 6;
    uint8_t page = cdb[2] & 0x3f, subpage = cdb[3];
    size_t alloc = ten ? be16_at(cdb + 7) : cdb[4];
    size_t hdr = ten ? 8 : 4, n = hdr, blen = 0;
    uint8_t b[SMALL_BUF];

    if (pc == 3) {
        req_illegal(req, ASC_SAVING_PARAMS_UNSUP);
        return;
    }
    if (subpage && !(page == 0x3f && subpage == 0xff)) {
        req_illegal(req, ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    memset(b, 0, sizeof(b));
    /* Device-specific parameter: WP, and DPOFUA (FUA is honoured). */
    b[ten ? 3 : 2] = (d->read_only ? 0x80 : 0) | 0x10;
    if (!dbd) {
        uint8_t *bd = b + hdr;
        if (llbaa) {
            b[4] = 0x01;                        /* LONGLBA */
            blen = 16;
            put_be64(bd, d->nb_blocks);
            put_be32(bd + 12, d->conf.logical_block_size);
        } else {
            blen = 8;
            put_be32(bd, d->nb_blocks > UINT32_MAX ? UINT32_MAX : (uint32_t)d->nb_blocks);
            put_be32(bd + 4, d->conf.logical_block_size & 0xffffff);
        }
        n += blen;
    }
    if (page == 0x3f) {
        n += mode_page(d, 0x08, pc, b + n);
        n += mode_page(d, 0x0a, pc, b + n);
    } else {
        size_t plen = mode_page(d, page, pc, b + n);
        if (!plen) {
            req_illegal(req, ASC_INVALID_FIELD_IN_CDB);
            return;
        }
        n += plen;
    }
    if (ten) {
        put_be16(b, (uint16_t)(n - 2));         /* mode data length excludes itself */
        put_be16(b + 6, (uint16_t)blen);
    } else {
        b[0] = (uint8_t)(n - 1);
        b[3] = (uint8_t)blen;
    }
    req_data_in(req, b, n, alloc);
}

static void cmd_report_luns(SCSIDiskReq *req)
{
    SCSIDisk *d = req->disk;
    uint8_t b[16];
    uint32_t alloc = be32_at(req->cdb + 6);
    unsigned lun = d->conf.lun;

    /* SPC-4 6.33: allocation length below 16 and unknown SELECT REPORT are invalid fields. */
    if (alloc < 16 || req->cdb[2] > 0x02) {
        req_illegal(req, ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    memset(b, 0, sizeof(b));
    put_be32(b, 8);                             /* LUN list length: one entry */
    if (lun < 256) {
        b[9] = (uint8_t)lun;                    /* peripheral device addressing */
    } else {
        b[8] = (uint8_t)(0x40 | (lun >> 8));    /* flat space addressing */
        b[9] = (uint8_t)lun;
    }
    req_data_in(req, b, sizeof(b), alloc);
}

static void cmd_request_sense(SCSIDiskReq *req, bool present)
{
    uint8_t b[SCSI_SENSE_FIXED_LEN];

    if (req->cdb[1] & 0x01) {
        /* DESC: descriptor format is not implemented. */
        req_illegal(req, ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    /* Sense is autosensed with each CHECK CONDITION: nothing is pending. */
    if (present) {
        scsi_build_sense(b, SCSI_SENSE_NO_SENSE, 0, 0);
    } else {
        scsi_build_sense(b, SCSI_SENSE_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED >> 8, 0);
    }
    req_data_in(req, b, sizeof(b), req->cdb[4]);
}

/* ---------------------------------------------------------------------- */
/* Block I/O                                                               */

static void rw_done(void *opaque, int ret);

static void req_backend_failed(SCSIDiskReq *req, bool is_write)
{
    if (req->error == -EROFS) {
        req_check(req, SCSI_SENSE_DATA_PROTECT, ASC_WRITE_PROTECTED);
    } else if (req->error == -EINVAL) {
        /* The image shrank under us: the range is gone. */
        req_illegal(req, ASC_LBA_OUT_OF_RANGE);
    } else {
        req_check(req, SCSI_SENSE_MEDIUM_ERROR, is_write ? ASC_WRITE_ERROR : ASC_UNRECOVERED_READ_ERROR);
    }
}

/* Backend callback: the request's operations share req->pending. */
static void rw_done(void *opaque, int ret)
{
    SCSIDiskReq *req = opaque;
    SCSIDisk *d = req->disk;
    uint8_t op = req->cdb[0];
    bool is_read = op == READ_6 || op == READ_10 || op == READ_12 || op == READ_16;

    if (ret < 0 && !req->error) {
        req->error = ret;
    }
    if (--req->pending) {
        return;
    }
    if (req->error) {
        req_backend_failed(req, !is_read);
        return;
    }
    if (req->flush_after) {
        /* FUA, or write cache off: stable before GOOD (SBC-3 4.15). */
        req->flush_after = false;
        d->stats.stable_writes++;
        req->pending = 1;
        blk_aio_flush(d->blk, rw_done, req);
        return;
    }
    if (is_read) {
        req->in_xfer = req->bytes;
        d->stats.bytes_read += req->bytes;
    } else if (op == WRITE_6 || op == WRITE_10 || op == WRITE_12 || op == WRITE_16) {
        req->out_xfer = req->bytes;
        d->stats.bytes_written += req->bytes;
    }
    req_good(req);
}

static void cmd_read_write(SCSIDiskReq *req)
{
    SCSIDisk *d = req->disk;
    const uint8_t *cdb = req->cdb;
    bool is_write = false;
    uint64_t lba;
    uint32_t nb;
    size_t avail;

    switch (cdb[0]) {
    case WRITE_6:
        is_write = true;
        /* fall through */
    case READ_6:
        lba = (uint64_t)(cdb[1] & 0x1f) << 16 | be16_at(cdb + 2);
        nb = cdb[4] ? cdb[4] : 256;             /* SBC-3 5.7: 0 means 256 blocks */
        break;
    case WRITE_10:
        is_write = true;
        /* fall through */
    case READ_10:
        lba = be32_at(cdb + 2);
        nb = be16_at(cdb + 7);
        break;
    case WRITE_12:
        is_write = true;
        /* fall through */
    case READ_12:
        lba = be32_at(cdb + 2);
        nb = be32_at(cdb + 6);
        break;
    case WRITE_16:
        is_write = true;
        /* fall through */
    default:                                    /* READ_16 */
        lba = be64_at(cdb + 2);
        nb = be32_at(cdb + 10);
        break;
    }
    if (is_write && d->read_only) {
        req_check(req, SCSI_SENSE_DATA_PROTECT, ASC_WRITE_PROTECTED);
        return;
    }
    if (!lba_ok(d, lba, nb)) {
        req_illegal(req, ASC_LBA_OUT_OF_RANGE);
        return;
    }
    if (d->conf.max_transfer_blocks && nb > d->conf.max_transfer_blocks) {
        req_illegal(req, ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    if (nb == 0) {
        req_good(req);                          /* no data, not an error (SBC-3 5.8) */
        return;
    }
    req->bytes = (uint64_t)nb * d->conf.logical_block_size;
    avail = is_write ? iov_size(req->out, req->out_cnt) : iov_size(req->in, req->in_cnt);
    if (avail < req->bytes) {
        /* The transport's buffer cannot hold the transfer: nothing is done. */
        req->overrun = true;
        req_good(req);
        return;
    }
    /* FUA (byte 1 bit 3; WRITE(6) has none) or write cache off: make it stable. */
    req->flush_after = is_write && (!d->conf.write_cache || (cdb[0] != WRITE_6 && (cdb[1] & 0x08)));
    req->pending = 1;
    if (is_write) {
        iov_cut(req->out, &req->out_cnt, req->bytes);
        d->stats.writes++;
        blk_aio_pwritev(d->blk, lba * d->conf.logical_block_size, req->out, (int)req->out_cnt, rw_done, req);
    } else {
        iov_cut(req->in, &req->in_cnt, req->bytes);
        d->stats.reads++;
        blk_aio_preadv(d->blk, lba * d->conf.logical_block_size, req->in, (int)req->in_cnt, rw_done, req);
    }
}

static void cmd_sync_cache(SCSIDiskReq *req)
{
    req->disk->stats.syncs++;
    req->pending = 1;
    blk_aio_flush(req->disk->blk, rw_done, req);
}

static void cmd_verify(SCSIDiskReq *req)
{
    const uint8_t *cdb = req->cdb;
    bool sixteen = cdb[0] == VERIFY_16;
    uint64_t lba = sixteen ? be64_at(cdb + 2) : be32_at(cdb + 2);
    uint32_t nb = sixteen ? be32_at(cdb + 10) : be16_at(cdb + 7);

    /* BYTCHK (bits 2-1) compares data: not implemented. Without it the medium is "verified". */
    if (cdb[1] & 0x06) {
        req_illegal(req, ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    if (!lba_ok(req->disk, lba, nb)) {
        req_illegal(req, ASC_LBA_OUT_OF_RANGE);
        return;
    }
    req_good(req);
}

/* UNMAP, SBC-3 5.28: the whole parameter list is checked before anything is discarded. */
static void cmd_unmap(SCSIDiskReq *req)
{
    SCSIDisk *d = req->disk;
    uint16_t plen = be16_at(req->cdb + 7), dlen, ddlen;
    uint8_t *list;
    unsigned ndesc;
    uint32_t bs = d->conf.logical_block_size;

    if (!d->conf.discard) {
        req_illegal(req, ASC_INVALID_OPCODE);
        return;
    }
    if (req->cdb[1] & 0x01) {
        req_illegal(req, ASC_INVALID_FIELD_IN_CDB);    /* ANCHOR */
        return;
    }
    if (d->read_only) {
        req_check(req, SCSI_SENSE_DATA_PROTECT, ASC_WRITE_PROTECTED);
        return;
    }
    if (plen == 0) {
        req_good(req);                          /* nothing to unmap */
        return;
    }
    if (plen < 8 || iov_size(req->out, req->out_cnt) < plen) {
        req_illegal(req, ASC_PARAM_LIST_LENGTH_ERROR);
        return;
    }
    /* Snapshot: the parameter list is read from guest memory once. */
    list = g_malloc(plen);
    iov_to_buf(req->out, req->out_cnt, 0, list, plen);
    req->out_xfer = plen;
    dlen = be16_at(list);
    ddlen = be16_at(list + 2);
    /* The lengths inside the list must fit the list (QEMU answers as SBC-3 suggests). */
    if ((uint32_t)dlen + 2 > plen || ddlen % 16 || (uint32_t)ddlen + 8 > plen) {
        g_free(list);
        req_illegal(req, ASC_PARAM_LIST_LENGTH_ERROR);
        return;
    }
    ndesc = ddlen / 16;
    if (ndesc > d->conf.max_unmap_descs) {
        g_free(list);
        req_illegal(req, ASC_INVALID_PARAM_FIELD);
        return;
    }
    for (unsigned i = 0; i < ndesc; i++) {
        const uint8_t *desc = list + 8 + 16 * i;
        uint64_t lba = be64_at(desc);
        uint32_t nb = be32_at(desc + 8);
        if (!lba_ok(d, lba, nb)) {
            g_free(list);
            req_illegal(req, ASC_LBA_OUT_OF_RANGE);
            return;
        }
        if (nb > d->conf.max_unmap_blocks) {
            g_free(list);
            req_illegal(req, ASC_INVALID_PARAM_FIELD);
            return;
        }
    }
    d->stats.unmaps++;
    /* One extra count so completions cannot finish the request while it is being submitted. */
    req->pending = 1;
    for (unsigned i = 0; i < ndesc; i++) {
        const uint8_t *desc = list + 8 + 16 * i;
        uint32_t nb = be32_at(desc + 8);
        if (nb) {
            req->pending++;
            blk_aio_pdiscard(d->blk, be64_at(desc) * bs, (uint64_t)nb * bs, rw_done, req);
        }
    }
    g_free(list);
    rw_done(req, 0);
}

static bool all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

/* WRITE SAME 10/16, SBC-3 5.41/5.42. */
static void cmd_write_same(SCSIDiskReq *req)
{
    SCSIDisk *d = req->disk;
    const uint8_t *cdb = req->cdb;
    bool sixteen = cdb[0] == WRITE_SAME_16;
    bool unmap = cdb[1] & 0x08, ndob = sixteen && (cdb[1] & 0x01);
    uint64_t lba = sixteen ? be64_at(cdb + 2) : be32_at(cdb + 2);
    uint32_t nb = sixteen ? be32_at(cdb + 10) : be16_at(cdb + 7);
    uint32_t bs = d->conf.logical_block_size;
    uint64_t total, chunk, nchunks;
    uint8_t *block;

    if (cdb[1] & 0x16) {
        /* ANCHOR (bit 4) and the protection bits are not implemented. */
        req_illegal(req, ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    if (d->read_only) {
        req_check(req, SCSI_SENSE_DATA_PROTECT, ASC_WRITE_PROTECTED);
        return;
    }
    /* WSNZ is set in VPD 0xb0: zero blocks is an invalid field, as is more than the maximum. */
    if (nb == 0 || nb > d->conf.max_write_same_blocks || (unmap && nb > d->conf.max_unmap_blocks)) {
        req_illegal(req, ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    if (!lba_ok(d, lba, nb)) {
        req_illegal(req, ASC_LBA_OUT_OF_RANGE);
        return;
    }
    block = g_malloc0(bs);
    if (!ndob) {
        if (iov_size(req->out, req->out_cnt) < bs) {
            g_free(block);
            req->overrun = true;
            req_good(req);
            return;
        }
        iov_to_buf(req->out, req->out_cnt, 0, block, bs);
        req->out_xfer = bs;
    }
    d->stats.write_sames++;
    total = (uint64_t)nb * bs;
    req->pending = 1;
    if (all_zero(block, bs)) {
        g_free(block);
        /* Zeros: let the backend zero (and deallocate, with UNMAP on a thin unit). */
        blk_aio_pwrite_zeroes(d->blk, lba * bs, total, unmap && d->conf.discard ? BLK_ZERO_MAY_UNMAP : 0,
                              rw_done, req);
        return;
    }
    /* A pattern: one bounce buffer of repeated blocks, written as many times as needed. */
    chunk = MIN(total, (uint64_t)MAX(bs, WRITE_SAME_BOUNCE / bs * bs));
    nchunks = (total + chunk - 1) / chunk;
    req->bounce = g_malloc(chunk);
    for (uint64_t off = 0; off < chunk; off += bs) {
        memcpy((uint8_t *)req->bounce + off, block, bs);
    }
    g_free(block);
    req->bounce_iov = g_new(struct iovec, nchunks);
    for (uint64_t i = 0; i < nchunks; i++) {
        uint64_t off = i * chunk;
        req->bounce_iov[i].iov_base = req->bounce;
        req->bounce_iov[i].iov_len = MIN(chunk, total - off);
        req->pending++;
        blk_aio_pwritev(d->blk, lba * bs + off, &req->bounce_iov[i], 1, rw_done, req);
    }
    rw_done(req, 0);
}

/* ---------------------------------------------------------------------- */
/* Dispatch                                                                */

void scsi_disk_req_submit(SCSIDisk *d, SCSIDiskReq *req)
{
    uint8_t op = req->cdb[0];
    unsigned need = scsi_cdb_length(op);
    bool present = req->lun == d->conf.lun;

    req->disk = d;
    req->status = SCSI_STATUS_GOOD;
    req->overrun = false;
    req->sense_len = 0;
    req->in_xfer = 0;
    req->out_xfer = 0;
    req->pending = 0;
    req->error = 0;
    req->flush_after = false;
    req->bounce = NULL;
    req->bounce_iov = NULL;
    req->bytes = 0;
    d->in_flight++;
    d->stats.cmds++;

    /* A CDB shorter than its opcode needs (or of a group not decoded) cannot be parsed. */
    if (req->cdb_len == 0 || need == 0 || need > req->cdb_len) {
        req_illegal(req, ASC_INVALID_OPCODE);
        return;
    }
    /* SPC-4 / SAM-5: a LUN without a unit answers INQUIRY, REPORT LUNS and REQUEST SENSE. */
    if (!present) {
        switch (op) {
        case INQUIRY:
            cmd_inquiry(req, false);
            return;
        case REPORT_LUNS:
            cmd_report_luns(req);
            return;
        case REQUEST_SENSE:
            cmd_request_sense(req, false);
            return;
        default:
            req_illegal(req, ASC_LUN_NOT_SUPPORTED);
            return;
        }
    }
    switch (op) {
    case TEST_UNIT_READY:
    case START_STOP:
    case ALLOW_MEDIUM_REMOVAL:
        req_good(req);
        break;
    case INQUIRY:
        cmd_inquiry(req, true);
        break;
    case REQUEST_SENSE:
        cmd_request_sense(req, true);
        break;
    case READ_CAPACITY_10:
        cmd_read_capacity_10(req);
        break;
    case SERVICE_ACTION_IN_16:
        if ((req->cdb[1] & 0x1f) == SAI_READ_CAPACITY_16) {
            cmd_read_capacity_16(req);
        } else {
            req_illegal(req, ASC_INVALID_FIELD_IN_CDB);
        }
        break;
    case MODE_SENSE_6:
    case MODE_SENSE_10:
        cmd_mode_sense(req);
        break;
    case REPORT_LUNS:
        cmd_report_luns(req);
        break;
    case READ_6: case READ_10: case READ_12: case READ_16:
    case WRITE_6: case WRITE_10: case WRITE_12: case WRITE_16:
        cmd_read_write(req);
        break;
    case SYNCHRONIZE_CACHE_10:
    case SYNCHRONIZE_CACHE_16:
        cmd_sync_cache(req);
        break;
    case VERIFY_10:
    case VERIFY_16:
        cmd_verify(req);
        break;
    case UNMAP:
        cmd_unmap(req);
        break;
    case WRITE_SAME_10:
    case WRITE_SAME_16:
        cmd_write_same(req);
        break;
    default:
        req_illegal(req, ASC_INVALID_OPCODE);
        break;
    }
}

/* ---------------------------------------------------------------------- */
/* Life cycle                                                              */

bool scsi_disk_realize(SCSIDisk *d, const SCSIDiskConf *conf, GError **errp)
{
    const char *bad = NULL;

    memset(d, 0, sizeof(*d));
    if (!conf->blk) {
        bad = "no block backend (drive)";
    } else if (conf->logical_block_size != 512 && conf->logical_block_size != 4096) {
        bad = "logical_block_size must be 512 or 4096";
    } else if (conf->lun > 16383) {
        bad = "lun must be 0..16383";
    } else if (conf->max_unmap_descs == 0 || conf->max_unmap_descs > 4095) {
        /* The UNMAP parameter list length is 16 bits: 8 + 16 * 4095 bytes at most. */
        bad = "max-unmap-descs must be 1..4095";
    }
    if (bad) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "scsi-hd: %s", bad);
        return false;
    }
    d->conf = *conf;
    d->blk = conf->blk;
    d->read_only = conf->read_only || blk_is_read_only(conf->blk);
    scsi_disk_resize(d);
    return true;
}

void scsi_disk_resize(SCSIDisk *d)
{
    d->nb_blocks = blk_getlength(d->blk) / d->conf.logical_block_size;
}

void scsi_disk_drain(SCSIDisk *d)
{
    if (d->blk) {
        blk_drain(d->blk);
    }
}

void scsi_disk_unrealize(SCSIDisk *d)
{
    scsi_disk_drain(d);
    d->blk = NULL;
}
