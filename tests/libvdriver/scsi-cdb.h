/*
 * Driver-side SCSI helpers for tests: READ/WRITE CDBs of every size and
 * big-endian field access (SBC-3 layouts).
 */
#ifndef TESTS_LIBVDRIVER_SCSI_CDB_H
#define TESTS_LIBVDRIVER_SCSI_CDB_H

#include <stdint.h>
#include <string.h>

#include "hw/scsi/scsi.h"

static inline void scsi_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline void scsi_put_be64(uint8_t *p, uint64_t v)
{
    scsi_put_be32(p, (uint32_t)(v >> 32));
    scsi_put_be32(p + 4, (uint32_t)v);
}

static inline uint32_t scsi_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A READ/WRITE CDB (6, 10, 12 or 16 bytes by @op) for @nb blocks at @lba; returns its length. */
static inline unsigned scsi_cdb_rw(uint8_t *cdb, uint8_t op, uint64_t lba, uint32_t nb)
{
    memset(cdb, 0, 16);
    cdb[0] = op;
    switch (op) {
    case READ_6:
    case WRITE_6:
        cdb[1] = (uint8_t)(lba >> 16) & 0x1f;
        cdb[2] = (uint8_t)(lba >> 8);
        cdb[3] = (uint8_t)lba;
        cdb[4] = (uint8_t)nb;
        return 6;
    case READ_10:
    case WRITE_10:
        scsi_put_be32(cdb + 2, (uint32_t)lba);
        cdb[7] = (uint8_t)(nb >> 8);
        cdb[8] = (uint8_t)nb;
        return 10;
    case READ_12:
    case WRITE_12:
        scsi_put_be32(cdb + 2, (uint32_t)lba);
        scsi_put_be32(cdb + 6, nb);
        return 12;
    default:
        scsi_put_be64(cdb + 2, lba);
        scsi_put_be32(cdb + 10, nb);
        return 16;
    }
}

#endif
