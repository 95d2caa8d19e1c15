/*
 * libFuzzer target: a hostile guest against fw_cfg (hw/nvram/fw_cfg.c)
 * through its I/O ports: selector and data port accesses of any size and
 * offset, DMA descriptors with any control/length/address placed anywhere
 * (RAM, a read-only region, holes, the top of the address space), and
 * guest stores in between. The checks: the sanitizers (no out-of-bounds
 * access, no leak), and for every DMA whose descriptor lies in writable RAM
 * the device writes back control 0 or the error bit, nothing else.
 *
 * Input (little-endian; a truncated input reads as zeros): a sequence of
 * operations, each an opcode byte (b % 5) and its arguments:
 *   0 SELECT  u16 key                    16-bit write to 0x510
 *   1 READ    u8 n                       n byte reads of 0x511
 *   2 DMA     u8 where, u32 control, u32 length, u8 target, u32 off
 *             descriptor at place @where, transfer to place @target + off
 *   3 PORT    u8 port (0x510 + b % 16), u8 size (1, 2, 4), u32 value, u8 write
 *   4 STORE   u16 off, u8 val            guest store into RAM A
 */
#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "fuzz-input.h"
#include "hw/nvram/fw_cfg.h"
#include "sysemu/ioport.h"

#define A_GPA   0x1000ull
#define A_SIZE  0x10000ull
#define B_GPA   0x20000ull          /* after a hole */
#define B_SIZE  0x1000ull
#define C_GPA   0x30000ull          /* read-only */
#define C_SIZE  0x1000ull
#define FZ_MAX_OPS 512

/* A guest-physical place: inside A, B, C, in a hole, straddling an end, or near 2^64. */
static uint64_t place(uint8_t kind, uint32_t off)
{
    switch (kind % 8) {
    case 0: return A_GPA + off % A_SIZE;
    case 1: return B_GPA + off % B_SIZE;
    case 2: return C_GPA + off % C_SIZE;
    case 3: return A_GPA + A_SIZE - 1 - off % 32;
    case 4: return A_GPA + A_SIZE + off % 0x1000;
    case 5: return UINT64_MAX - off % 64;
    case 6: return (uint64_t)off << 32 | off;
    default: return off;
    }
}

static uint8_t *host_of(GuestMemory *mem, uint64_t gpa, uint64_t len)
{
    uint64_t n = len;
    uint8_t *p = guest_memory_translate(mem, gpa, &n, true);

    return p && n == len ? p : NULL;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++) {
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t ram_a[A_SIZE], ram_b[B_SIZE], ram_c[C_SIZE];
    uint8_t e820[E820_ENTRY_SIZE] = { 0 };
    Input in = { data, size };
    GuestMemory mem;
    FWCfgState *s;

    memset(ram_a, 0, sizeof(ram_a));
    memset(ram_b, 0, sizeof(ram_b));
    guest_memory_init(&mem);
    g_assert(guest_memory_add(&mem, A_GPA, A_SIZE, ram_a, true) == 0);
    g_assert(guest_memory_add(&mem, B_GPA, B_SIZE, ram_b, true) == 0);
    g_assert(guest_memory_add(&mem, C_GPA, C_SIZE, ram_c, false) == 0);
    s = fw_cfg_init_io_dma(&mem);
    fw_cfg_add_i64(s, FW_CFG_RAM_SIZE, A_SIZE);
    fw_cfg_add_i16(s, FW_CFG_NB_CPUS, 1);
    e820[8] = 1;
    fw_cfg_add_file(s, "etc/e820", e820, sizeof(e820));
    fw_cfg_add_file(s, "bootorder", "", 0);
    fw_cfg_add_file(s, "a/long/file/name/that/fills/most/of/the/fifty/six/byte", "x", 1);

    for (unsigned ops = 0; in.left && ops < FZ_MAX_OPS; ops++) {
        switch (in_u8(&in) % 5) {
        case 0:
            ioport_write(FW_CFG_IO_BASE, in_u16(&in), 2);
            break;
        case 1: {
            unsigned n = in_u8(&in);

            for (unsigned i = 0; i < n; i++) {
                (void)ioport_read(FW_CFG_IO_BASE + 1, 1);
            }
            break;
        }
        case 2: {
            uint8_t where = in_u8(&in);
            uint32_t control = in_u32(&in), length = in_u32(&in);
            uint8_t target = in_u8(&in);
            uint64_t addr = place(target, in_u32(&in));
            uint64_t desc = place(where, (uint32_t)where * 16);
            uint8_t *d = host_of(&mem, desc, 16);

            if (d) {
                put_be(d, control, 4);
                put_be(d + 4, length, 4);
                put_be(d + 8, addr, 8);
            }
            ioport_write(FW_CFG_DMA_IO_BASE, GUINT32_SWAP_LE_BE((uint32_t)(desc >> 32)), 4);
            ioport_write(FW_CFG_DMA_IO_BASE + 4, GUINT32_SWAP_LE_BE((uint32_t)desc), 4);
            if (d) {
                uint32_t back = (uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3];

                /* the device answers with success or the error bit, nothing else */
                if (back != 0 && back != FW_CFG_DMA_CTL_ERROR) {
                    __builtin_trap();
                }
            }
            break;
        }
        case 3: {
            uint32_t port = FW_CFG_IO_BASE + in_u8(&in) % 16;
            unsigned sz = 1u << (in_u8(&in) % 3);
            uint32_t val = in_u32(&in);

            if (in_u8(&in) & 1) {
                ioport_write(port, val, sz);
            } else {
                (void)ioport_read(port, sz);
            }
            break;
        }
        default: {
            uint16_t off = in_u16(&in);

            ram_a[off % A_SIZE] = in_u8(&in);
            break;
        }
        }
    }
    fw_cfg_destroy(s);
    return 0;
}
