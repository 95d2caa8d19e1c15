/*
 * iovec helpers for device models. The guest chooses how a buffer is split
 * into descriptors, so code must never assume a layout: copy, find and trim
 * through these.
 */
#ifndef QEMU_IOV_H
#define QEMU_IOV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

size_t iov_size(const struct iovec *iov, unsigned cnt);

/* Copy up to @bytes from @iov, starting at byte @off, into @buf. Returns bytes copied. */
size_t iov_to_buf(const struct iovec *iov, unsigned cnt, size_t off, void *buf, size_t bytes);

/* Copy up to @bytes from @buf into @iov, starting at byte @off. Returns bytes copied. */
size_t iov_from_buf(const struct iovec *iov, unsigned cnt, size_t off, const void *buf, size_t bytes);

/* Drop @bytes from the front of *@iov (in place: the array is the caller's own). */
void iov_trim_front(struct iovec **iov, unsigned *cnt, size_t bytes);

/* Where byte @off of @iov lives, or NULL beyond its end. */
uint8_t *iov_byte(const struct iovec *iov, unsigned cnt, size_t off);

/*
 * Copy from @src (from byte @src_off) into @dst (from byte @dst_off) until
 * either runs out. memmove: a hostile driver may point a device-writable
 * buffer at a readable one (e.g. net loopback copies guest memory to
 * itself). Returns bytes copied.
 */
size_t iov_copy(const struct iovec *dst, unsigned dst_cnt, size_t dst_off,
                const struct iovec *src, unsigned src_cnt, size_t src_off);

#endif
