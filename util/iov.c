/*
 * iovec helpers (include/qemu/iov.h).
 */
#include <string.h>

#include "qemu/iov.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))

size_t iov_size(const struct iovec *iov, unsigned cnt)
{
    size_t total = 0;

    for (unsigned i = 0; i < cnt; i++) {
        total += iov[i].iov_len;
    }
    return total;
}

size_t iov_to_buf(const struct iovec *iov, unsigned cnt, size_t off, void *buf, size_t bytes)
{
    size_t done = 0;

    for (unsigned i = 0; i < cnt && done < bytes; i++) {
        size_t n;

        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        n = MIN(iov[i].iov_len - off, bytes - done);
        memcpy((uint8_t *)buf + done, (const uint8_t *)iov[i].iov_base + off, n);
        done += n;
        off = 0;
    }
    return done;
}

size_t iov_from_buf(const struct iovec *iov, unsigned cnt, size_t off, const void *buf, size_t bytes)
{
    size_t done = 0;

    for (unsigned i = 0; i < cnt && done < bytes; i++) {
        size_t n;

        if (off >= iov[i].iov_len) {
            off -= iov[i].iov_len;
            continue;
        }
        n = MIN(iov[i].iov_len - off, bytes - done);
        memcpy((uint8_t *)iov[i].iov_base + off, (const uint8_t *)buf + done, n);
        done += n;
        off = 0;
    }
    return done;
}

void iov_trim_front(struct iovec **iov, unsigned *cnt, size_t bytes)
{
    while (*cnt && bytes) {
        if (bytes < (*iov)[0].iov_len) {
            (*iov)[0].iov_base = (uint8_t *)(*iov)[0].iov_base + bytes;
            (*iov)[0].iov_len -= bytes;
            return;
        }
        bytes -= (*iov)[0].iov_len;
        (*iov)++;
        (*cnt)--;
    }
}

uint8_t *iov_byte(const struct iovec *iov, unsigned cnt, size_t off)
{
    for (unsigned i = 0; i < cnt; i++) {
        if (off < iov[i].iov_len) {
            return (uint8_t *)iov[i].iov_base + off;
        }
        off -= iov[i].iov_len;
    }
    return NULL;
}

size_t iov_copy(const struct iovec *dst, unsigned dst_cnt, size_t dst_off,
                       const struct iovec *src, unsigned src_cnt, size_t src_off)
{
    unsigned di = 0, si = 0;
    size_t done = 0;

    while (di < dst_cnt && dst_off >= dst[di].iov_len) {
        dst_off -= dst[di++].iov_len;
    }
    while (si < src_cnt && src_off >= src[si].iov_len) {
        src_off -= src[si++].iov_len;
    }
    while (di < dst_cnt && si < src_cnt) {
        size_t n = MIN(dst[di].iov_len - dst_off, src[si].iov_len - src_off);

        memmove((uint8_t *)dst[di].iov_base + dst_off, (const uint8_t *)src[si].iov_base + src_off, n);
        done += n;
        dst_off += n;
        src_off += n;
        if (dst_off == dst[di].iov_len) {
            di++;
            dst_off = 0;
        }
        if (src_off == src[si].iov_len) {
            si++;
            src_off = 0;
        }
    }
    return done;
}
