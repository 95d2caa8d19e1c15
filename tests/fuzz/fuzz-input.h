/*
 * Reading a libFuzzer input as little-endian integers; past its end every
 * read is 0 (a truncated input means zeros), so targets need no length checks.
 */
#ifndef TESTS_FUZZ_FUZZ_INPUT_H
#define TESTS_FUZZ_FUZZ_INPUT_H

#include <stddef.h>
#include <stdint.h>

typedef struct Input {
    const uint8_t *p;
    size_t left;
} Input;

static inline uint8_t in_u8(Input *in)
{
    if (!in->left) {
        return 0;
    }
    in->left--;
    return *in->p++;
}

static inline uint16_t in_u16(Input *in)
{
    uint16_t lo = in_u8(in);
    return lo | (uint16_t)in_u8(in) << 8;
}

static inline uint32_t in_u32(Input *in)
{
    uint32_t lo = in_u16(in);
    return lo | (uint32_t)in_u16(in) << 16;
}

static inline uint64_t in_u64(Input *in)
{
    uint64_t lo = in_u32(in);
    return lo | (uint64_t)in_u32(in) << 32;
}

#endif
