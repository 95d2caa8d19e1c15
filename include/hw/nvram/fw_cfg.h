/*
 * QEMU's firmware configuration device (fw_cfg), x86 I/O port flavour, as
 * described in QEMU's docs/specs/fw_cfg.rst:
 *
 *   0x510  selector (16-bit write)      0x511  data (byte reads, stream)
 *   0x514  DMA address (64-bit, big-endian: high dword at 0x514, writing
 *          the low dword at 0x518 starts the transfer); reads "QEMU CFG"
 *
 * Items are selected by key; a read advances an offset within the item and
 * reads past its end return 0. FW_CFG_FILE_DIR lists the named files
 * (big-endian count, then {be32 size, be16 select, be16 reserved,
 * char name[56]} sorted by name, keys from FW_CFG_FILE_FIRST in that order).
 *
 * DMA (struct FWCfgDmaAccess in guest RAM, all big-endian): control (bit 0
 * error, 1 read, 2 skip, 3 select with the key in bits 16-31, 4 write),
 * length, address. The device writes control back as 0 on success or with
 * the error bit. Every guest value is checked: the descriptor and the whole
 * target range must lie in guest RAM (else error, nothing written), items
 * are read-only (write -> error), a transfer never reads past an item
 * (the rest of a read is zero-filled).
 *
 * Context: main loop thread only.
 */
#ifndef HW_NVRAM_FW_CFG_H
#define HW_NVRAM_FW_CFG_H

#include <stddef.h>
#include <stdint.h>

#include "exec/memory.h"

#define FW_CFG_IO_BASE          0x510
#define FW_CFG_DMA_IO_BASE      0x514

/* Item keys (QEMU include/standard-headers/linux/qemu_fw_cfg.h). */
#define FW_CFG_SIGNATURE        0x00
#define FW_CFG_ID               0x01
#define FW_CFG_UUID             0x02
#define FW_CFG_RAM_SIZE         0x03
#define FW_CFG_NOGRAPHIC        0x04
#define FW_CFG_NB_CPUS          0x05
#define FW_CFG_MACHINE_ID       0x06
#define FW_CFG_BOOT_MENU        0x0e
#define FW_CFG_MAX_CPUS         0x0f
#define FW_CFG_FILE_DIR         0x19
#define FW_CFG_FILE_FIRST       0x20
#define FW_CFG_FILE_SLOTS       0x20
#define FW_CFG_MAX_ENTRY        (FW_CFG_FILE_FIRST + FW_CFG_FILE_SLOTS)
#define FW_CFG_WRITE_CHANNEL    0x4000
#define FW_CFG_ARCH_LOCAL       0x8000
#define FW_CFG_ENTRY_MASK       (~(FW_CFG_WRITE_CHANNEL | FW_CFG_ARCH_LOCAL) & 0xffff)
#define FW_CFG_IRQ0_OVERRIDE    (FW_CFG_ARCH_LOCAL + 2)

/* FW_CFG_ID feature bits. */
#define FW_CFG_VERSION          0x01    /* the traditional interface */
#define FW_CFG_VERSION_DMA      0x02

/* FWCfgDmaAccess.control bits. */
#define FW_CFG_DMA_CTL_ERROR    0x01
#define FW_CFG_DMA_CTL_READ     0x02
#define FW_CFG_DMA_CTL_SKIP     0x04
#define FW_CFG_DMA_CTL_SELECT   0x08
#define FW_CFG_DMA_CTL_WRITE    0x10

#define FW_CFG_DMA_SIGNATURE    "QEMU CFG"
#define FW_CFG_MAX_FILE_PATH    56
#define FW_CFG_FILE_ENTRY_SIZE  64

/* e820 entry types and the etc/e820 record: le64 address, le64 length, le32 type (20 bytes). */
#define E820_RAM                1
#define E820_RESERVED           2
#define E820_ENTRY_SIZE         20

typedef struct FWCfgState FWCfgState;

/*
 * Create the device with the items every QEMU fw_cfg has (signature, id,
 * uuid, nographic, boot menu, file dir) and claim its ports; DMA reaches
 * guest RAM through @mem.
 */
FWCfgState *fw_cfg_init_io_dma(GuestMemory *mem);
void fw_cfg_destroy(FWCfgState *s);

/* Add or replace item @key (a copy of @data). Keys beyond the table are a host bug. */
void fw_cfg_add_bytes(FWCfgState *s, uint16_t key, const void *data, size_t len);
/* Integers are stored little-endian, as QEMU's fw_cfg_add_i16/i32/i64. */
void fw_cfg_add_i16(FWCfgState *s, uint16_t key, uint16_t value);
void fw_cfg_add_i32(FWCfgState *s, uint16_t key, uint32_t value);
void fw_cfg_add_i64(FWCfgState *s, uint16_t key, uint64_t value);
/* Add a named file (kept sorted by name; keys renumbered from FW_CFG_FILE_FIRST). */
void fw_cfg_add_file(FWCfgState *s, const char *name, const void *data, size_t len);

#endif
