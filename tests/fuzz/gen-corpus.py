#!/usr/bin/env python3
"""Write the seed corpus for fuzz-virtqueue (tests/fuzz/corpus/virtqueue/).

The input format is documented at the top of fuzz-virtqueue.c; the opcode
numbers and argument layouts below must match it. Seeds are small, readable
scenarios (valid chains on every layout, indirect tables, batch completions,
wrap-around, restore/reset paths, a few hostile rings) for libFuzzer to mutate.

Also writes the minimal reproducers of core bugs the fuzzer found to
crashes-found/ (see the README there); once a bug is fixed its reproducer also
joins the corpus as regress-NAME.

Usage: tests/fuzz/gen-corpus.py [OUTDIR]   (default: corpus/virtqueue/ and crashes-found/ next to
       this file; with OUTDIR, only the corpus, there)
"""
import os
import struct
import sys

# Opcodes, in fuzz-virtqueue.c's enum order.
(OP_WRITE, OP_WRITE16, OP_RAW_DESC, OP_SET_AVAIL, OP_DRV_EVENT, OP_DRV_POST, OP_DRV_REAP,
 OP_POP, OP_FILL, OP_FLUSH, OP_PUSH, OP_DETACH, OP_UNPOP, OP_REWIND, OP_SET_NOTIFY,
 OP_NOTIFY, OP_KICK, OP_RESTORE, OP_RESET, OP_MEMORY, OP_BATCH, OP_RESUBMIT) = range(22)

# Header feature bits.
PACKED, IN_ORDER, EVENT_IDX, INDIRECT, BATCH, NOTIFY_ON_EMPTY, SUPPRESS = (1 << i for i in range(7))

# ADDR selectors (HUGE: the 2 GiB region, lengths in 64 KiB units).
A_DATA, B_DATA, SPAN, RO_C, GAP, RINGS, RAW, TOP, HUGE = range(9)
WRITE = 0x80

# Descriptor flags.
F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4


def u8(v):
    return struct.pack('<B', v & 0xff)


def u16(v):
    return struct.pack('<H', v & 0xffff)


def u32(v):
    return struct.pack('<I', v & 0xffffffff)


def u64(v):
    return struct.pack('<Q', v & 0xffffffffffffffff)


def header(feat, size_byte, place=0, init_idx=0):
    return u8(feat) + u8(size_byte) + u8(place) + u16(init_idx)


def split_size(num):
    """Header byte for a split queue of num entries (a power of two <= 256)."""
    return num.bit_length() - 1


def packed_size(num):
    return num - 1


def desc(sel, off, length, raw=None):
    b = u8(sel) + u16(off)
    if (sel & 7) == RAW:
        b += u64(raw or 0)
    return b + u16(length)


# Post faults (high nibble of the post's first byte), fuzz-virtqueue.c's PF_* order.
(PF_NONE, PF_HEAD_NEXT, PF_ITAB_LEN_ODD, PF_ITAB_LEN_ZERO, PF_ITAB_OUTSIDE, PF_ITAB_MISALIGNED,
 PF_INDIRECT_INSIDE, PF_READ_AFTER_WRITE, PF_NEXT_RANGE, PF_LOOP, PF_BAD_HEAD, PF_DUP,
 PF_ZERO_LEN, PF_AVAIL_JUMP, PF_ITAB_SPANS, PF_ITAB_TOO_LONG) = range(16)


def post(descs, indirect=False, fault=PF_NONE):
    assert 1 <= len(descs) <= 8
    return (u8(OP_DRV_POST) + u8((len(descs) - 1) | (8 if indirect else 0) | fault << 4) +
            b''.join(descs))


def req(i=0, out_len=64, in_len=64, sel=A_DATA):
    """A typical request: one readable header, one writable reply."""
    return post([desc(sel, 0x100 * i, out_len), desc(sel | WRITE, 0x100 * i + 0x80, in_len)])


def pop(sg=8):
    return u8(OP_POP) + u8(sg)


def fill(which=0, mode=0, length=0):
    return u8(OP_FILL) + u8(which) + u8(mode) + u16(length)


def push(which=0, mode=0, length=0):
    return u8(OP_PUSH) + u8(which) + u8(mode) + u16(length)


FLUSH = u8(OP_FLUSH)
REAP = u8(OP_DRV_REAP)
KICK = u8(OP_KICK)
UNPOP = u8(OP_UNPOP)


def rewind(n):
    return u8(OP_REWIND) + u8(n)


def detach(which=0):
    return u8(OP_DETACH) + u8(which)


def set_notify(on):
    return u8(OP_SET_NOTIFY) + u8(on)


def notify(kind):
    return u8(OP_NOTIFY) + u8(kind)


def drv_event(kind, a, b):
    return u8(OP_DRV_EVENT) + u8(kind) + u16(a) + u16(b)


def restore(mode, idx=0):
    return u8(OP_RESTORE) + u8(mode) + u16(idx)


def reset(mode):
    return u8(OP_RESET) + u8(mode)


def memory(mode):
    return u8(OP_MEMORY) + u8(mode)


def batch(on):
    return u8(OP_BATCH) + u8(on)


def write(area, off, data):
    return u8(OP_WRITE) + u8(area) + u16(off) + u8(len(data)) + data


def write16(area, off, val):
    return u8(OP_WRITE16) + u8(area) + u16(off) + u16(val)


def raw_desc(where, i, sel, off, length, flags, nxt, raw=None):
    b = u8(OP_RAW_DESC) + u8(where) + u16(i) + u8(sel) + u16(off)
    if (sel & 7) == RAW:
        b += u64(raw or 0)
    return b + u32(length) + u16(flags) + u16(nxt)


def set_avail(idx):
    return u8(OP_SET_AVAIL) + u16(idx)


def resubmit(head, how=8):
    return u8(OP_RESUBMIT) + u8(head) + u8(how)


def rounds(n, one):
    return b''.join(one(i) for i in range(n))


LAYOUTS = [('split', 0), ('packed', PACKED), ('split-inorder', IN_ORDER),
           ('packed-inorder', PACKED | IN_ORDER)]


def size_byte(feat, num):
    return packed_size(num) if feat & PACKED else split_size(num)


def seeds():
    out = {}
    for name, lay in LAYOUTS:
        hdr8 = header(lay | EVENT_IDX, size_byte(lay, 8))
        # One request at a time, reaped each time.
        out[name + '-basic'] = hdr8 + rounds(4, lambda i: req(i) + pop() + push() + REAP)
        # Several in flight, completed out of order (in-order: published in order).
        out[name + '-reorder'] = (hdr8 + rounds(4, req) + pop() * 4 + fill(3) + fill(1) + FLUSH +
                                  fill(0) + fill(0, 2, 17) + FLUSH + REAP)
        # A long chain: 8 descriptors, one spanning regions A and B.
        out[name + '-long-chain'] = (header(lay, size_byte(lay, 16)) +
                                     post([desc(A_DATA, 0, 32), desc(SPAN, 0x700, 0x200),
                                           desc(B_DATA, 0, 16), desc(A_DATA, 0x40, 1),
                                           desc(A_DATA | WRITE, 0x200, 64), desc(SPAN | WRITE, 0x780, 0x100),
                                           desc(B_DATA | WRITE, 0x100, 8), desc(A_DATA | WRITE, 0x300, 0)]) +
                                     pop(63) + push() + REAP)
        # Indirect tables.
        out[name + '-indirect'] = (header(lay | INDIRECT, size_byte(lay, 8)) +
                                   post([desc(A_DATA, 0, 16), desc(A_DATA | WRITE, 0x40, 32),
                                         desc(B_DATA | WRITE, 0, 16)], indirect=True) +
                                   req(1) + pop() + pop() + fill(1) + fill(0) + FLUSH + REAP)
        # Wrap-around: a small ring close to the 16-bit index end / a packed lap.
        out[name + '-wrap'] = (header(lay, size_byte(lay, 4), 0, 0xfffd if not lay & PACKED else 0x8002) +
                               rounds(12, lambda i: req(i % 3) + req(i % 3 + 4) + pop() + pop() +
                                      push(1) + push(0) + REAP))
        # Detach, unpop, rewind, then everything used.
        out[name + '-giveback'] = (hdr8 + rounds(4, req) + pop() * 4 + UNPOP + rewind(2) + pop() +
                                   detach(0) + pop() * 2 + fill(0) + fill(0) + fill(0) + FLUSH + REAP)
        # Notification suppression and event idx from both sides.
        out[name + '-notify'] = (hdr8 + set_notify(0) + req() + KICK + notify(0) + set_notify(1) +
                                 drv_event(0, 1, 2) + push() + notify(1) + drv_event(1, 0, 1) + req(1) +
                                 pop() + push() + notify(0) + notify(2) + REAP)
        # Save/restore and reset paths.
        out[name + '-restore'] = (hdr8 + req() + req(1) + pop() + restore(0) + pop() + pop() + fill(1) +
                                  restore(1) + pop() + pop() + push(0) + push(0) + REAP +
                                  restore(2, 5) + reset(0) + req() + pop() + push() + REAP +
                                  reset(1) + req() + pop() + push() + REAP)
        # A backend restart with inflight resubmission (split; packed falls back to a restore).
        out[name + '-restart'] = (hdr8 + rounds(4, req) + pop() * 4 + fill(2) + detach(0) + restore(5) +
                                  fill(1, 4) + push(0) + restore(0x85) + push(1) + push(0) + FLUSH + REAP)
        # Ordered fill called directly (mode bit 2), partial lengths.
        out[name + '-ordered-fill'] = (hdr8 + rounds(3, req) + pop() * 3 + fill(2, 6, 7) + fill(0, 4) +
                                       fill(0, 5) + FLUSH + REAP)
        # Chains past 4 GiB in the huge region, and one just under.
        out[name + '-huge'] = (header(lay, size_byte(lay, 8)) +
                               post([desc(HUGE, 0, 0x8000), desc(HUGE, 0, 0x8000), desc(HUGE | WRITE, 0, 0xffff)]) +
                               pop())
        out[name + '-huge-ok'] = (header(lay, size_byte(lay, 8)) +
                                  post([desc(HUGE, 0, 0x8000), desc(HUGE | WRITE, 0x100, 0x7fff)]) +
                                  pop() + push() + REAP)
        # Indirect table with more entries than the queue (8 on a queue of 4).
        out[name + '-indirect-too-long'] = (header(lay | INDIRECT, size_byte(lay, 4)) +
                                            post([desc(A_DATA, 16 * i, 16) for i in range(8)], indirect=True) +
                                            pop())
        # virtqueue_pop (allocating) and the kick handler.
        out[name + '-kick'] = hdr8 + rounds(3, req) + KICK + pop(0xf3) + push(2) + push(0) + push(0) + REAP
        # Memory map changes.
        out[name + '-memory'] = (hdr8 + req(0, sel=B_DATA) + memory(0) + pop() + memory(1) + memory(2) + REAP)
        # Hostile: a descriptor loop, out-of-range head, a guest scribble in flight.
        if lay & PACKED:
            out[name + '-hostile-loop'] = (hdr8 + rounds(8, lambda i: raw_desc(2, i, A_DATA, 0, 16, F_NEXT, 0)) +
                                           pop() + notify(0))
            out[name + '-hostile-id'] = hdr8 + raw_desc(2, 0, A_DATA, 0, 16, 0, 8) + pop()
            out[name + '-hostile-nested'] = (header(lay | INDIRECT, size_byte(lay, 8)) +
                                             raw_desc(1, 0, A_DATA, 0, 16, F_INDIRECT, 0) +
                                             raw_desc(2, 0, RINGS, 0x2000, 32, F_INDIRECT, 0) + pop())
            # Second lap over descriptors still in flight.
            out[name + '-hostile-overrun'] = (header(lay, size_byte(lay, 2)) + raw_desc(2, 0, A_DATA, 0, 16, 0, 0) +
                                              raw_desc(2, 1, A_DATA, 0, 16, 0, 1) + pop() + pop() +
                                              raw_desc(0, 0, A_DATA, 0, 16, 0x8000, 1) + pop())
        else:
            out[name + '-hostile-loop'] = (hdr8 + raw_desc(0, 0, A_DATA, 0, 16, F_NEXT, 1) +
                                           raw_desc(0, 1, A_DATA, 0, 16, F_NEXT, 0) + write16(2, 4, 0) +
                                           set_avail(1) + pop())
            out[name + '-hostile-jump'] = hdr8 + set_avail(9) + pop()
            # The same head twice in the avail ring.
            out[name + '-hostile-dup-head'] = hdr8 + req() + set_avail(2) + pop() + pop()
            # Resubmission of heads a vhost-user inflight region names.
            out[name + '-hostile-resubmit'] = (hdr8 + req() + req(1) + pop() + restore(0) + resubmit(0) +
                                               resubmit(9) + resubmit(2, 0xf1) + pop())
        out[name + '-scribble'] = (hdr8 + req() + req(1) + pop() + write(1, 0, bytes(range(48))) +
                                   pop() + push() + write(3, 0, b'\xff' * 16) + REAP)
        # Each post fault once, direct and indirect, after a valid request in flight.
        for fault in range(1, 16):
            if fault == PF_ITAB_MISALIGNED:
                continue                # crashes-found/indirect-table-misaligned-*
            chain = [desc(A_DATA, 0x400, 32), desc(A_DATA | WRITE, 0x500, 32)]
            out['%s-fault%02d' % (name, fault)] = (header(lay | INDIRECT, size_byte(lay, 8)) + req() + pop() +
                                                    post(chain, fault=fault) + pop() +
                                                    post(chain, indirect=True, fault=fault) + pop() + push() +
                                                    REAP)
        # Batch publication of complete buffers, a partial one ending a batch.
        if lay & IN_ORDER:
            out[name + '-batch'] = (header(lay | BATCH, size_byte(lay, 8)) + rounds(6, req) + pop() * 6 +
                                    fill(5) + fill(3) + fill(0) + fill(0, 2, 5) + fill(0) + fill(0) + FLUSH +
                                    REAP + rounds(3, req) + pop() * 3 + batch(0) + fill(0) + fill(0) +
                                    fill(0) + FLUSH + REAP)
    # Sizes: the extremes and (packed) non powers of two.
    out['split-size1'] = header(0, split_size(1)) + rounds(3, lambda i: req() + pop() + push() + REAP)
    out['split-size256'] = header(IN_ORDER, split_size(256)) + rounds(8, req) + pop() * 8 + push(7) + FLUSH + REAP
    out['packed-size1'] = header(PACKED, 0) + rounds(3, lambda i: req() + pop() + push() + REAP)
    out['packed-size3'] = header(PACKED | IN_ORDER, 2) + rounds(6, lambda i: req() + req(1) + pop() * 2 +
                                                                  push(1) + push(0) + REAP)
    out['packed-size256'] = header(PACKED, 255) + rounds(8, req) + pop() * 8 + push(3) + push(0) + REAP
    # Ring placement variants: region B, read-only C (split can read rings there), misplaced.
    out['split-rings-in-b'] = header(0, 3, 0x15) + req() + pop() + push() + REAP
    out['split-rings-ro'] = header(0, 3, 0x0a) + req() + pop() + push() + REAP
    out['packed-rings-misplaced'] = header(PACKED, 7, 0x3f) + req() + pop()
    # Memory map changes under running rings: B read-only with rings / buffers there, A removed.
    out['split-rings-in-b-made-ro'] = header(0, 3, 0x15) + req() + pop() + memory(3) + push() + REAP
    out['packed-rings-in-b-made-ro'] = header(PACKED, 7, 0x15) + req() + pop() + memory(3) + push() + REAP
    out['split-buffers-in-b-made-ro'] = (header(IN_ORDER, 3) + req(0, sel=B_DATA) + memory(0) + memory(2) +
                                         pop() + memory(4) + memory(5) + notify(0))
    out['packed-ring-memory-gone'] = header(PACKED | IN_ORDER, 7) + req() + pop() + memory(4) + push() + memory(5)
    out['split-notify-on-empty'] = header(NOTIFY_ON_EMPTY | SUPPRESS, 3) + req() + pop() + push() + notify(0)
    return out


# Reproducers in crashes() whose bug is not fixed yet (kept out of the corpus).
UNFIXED = set()


def crashes():
    """Minimal reproducers of core bugs the fuzzer found (crashes-found/README.md)."""
    out = {}
    # 1: an indirect table at an odd guest address is read through a misaligned VRingDesc *.
    out['indirect-table-misaligned-split'] = (header(INDIRECT, split_size(8)) +
                                              raw_desc(0, 0, RINGS, 0x2001, 16, F_INDIRECT, 0) +
                                              set_avail(1) + pop())
    out['indirect-table-misaligned-packed'] = (header(PACKED | INDIRECT, packed_size(8)) +
                                               raw_desc(2, 0, RINGS, 0x2001, 16, F_INDIRECT, 0) + pop())
    # 2: without IN_ORDER, a filled but not yet flushed head / buffer id is handed out
    # again when the guest re-posts it (split: inuse then passes the queue size).
    one = post([desc(A_DATA | WRITE, 0, 64)])
    out['split-refill-before-flush'] = (header(0, split_size(2)) + one + pop() + fill() + set_avail(2) +
                                        pop() + fill() + set_avail(3) + pop())
    out['packed-refill-before-flush'] = (header(PACKED, packed_size(8)) + one + pop() + fill() +
                                         post([desc(A_DATA | WRITE, 0x100, 64)], fault=PF_DUP) + pop())
    # 3: split without IN_ORDER: unpop of a buffer resubmitted with virtqueue_pop_inflight*
    # moves last_avail_idx back although resubmission never advanced it: the next pop hands
    # out head 2 again (already used), head 0 is lost.
    out['split-unpop-after-resubmit'] = (header(0, split_size(4)) + req(0) + req(1) + pop() + pop() +
                                         push(1) + restore(5) + rewind(1) + pop() + push(0) + push(0) + REAP)
    return out


def write_all(outdir, files):
    os.makedirs(outdir, exist_ok=True)
    for name, data in sorted(files.items()):
        with open(os.path.join(outdir, name), 'wb') as fp:
            fp.write(data)
    print('%d files in %s' % (len(files), outdir))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = seeds()
    corpus.update(('regress-' + name, data) for name, data in crashes().items() if name not in UNFIXED)
    if len(sys.argv) > 1:
        write_all(sys.argv[1], corpus)
        return
    write_all(os.path.join(here, 'corpus', 'virtqueue'), corpus)
    write_all(os.path.join(here, 'crashes-found'), crashes())


if __name__ == '__main__':
    main()
