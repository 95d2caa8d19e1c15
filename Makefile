# The two commands a newcomer needs are `make demo` and `make check` (README).
MESON_TEST = meson test --print-errorlogs --num-processes 2
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1 \
          UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:abort_on_error=1

.PHONY: all configure check demo demo-ring bench bench-blk bench-net fuzz-long clean

all: configure
	ninja -C build -j2

configure:
	./configure

# Everything: the gcc build's tests, then the same tests (and a bounded libFuzzer
# smoke run) under AddressSanitizer + UBSan.
check: configure
	ninja -C build -j2
	ninja -C build-san -j2
	$(MESON_TEST) -C build
	$(SAN_ENV) $(MESON_TEST) -C build-san

# The main job: Debian's QEMU boots Debian's Linux with its disk served by
# vdm-vhost-user-blk; the guest writes, reads back and checks a pattern, the
# host checks the image. `make demo PACKED=on` uses packed rings.
PACKED ?= off
demo: all
	python3 tests/functional/boot-vhost-user-blk.py --backend vdm \
	    --daemon build/contrib/vhost-user-blk/vdm-vhost-user-blk --packed $(PACKED) \
	    --expect-packed $(PACKED)

# The virtio core alone: out-of-order completions, what each ring mode publishes.
demo-ring: all
	build/contrib/demo/vdm-ring-demo

bench: all
	build/bench/vdm-bench-ring --json build/bench-ring.json

# 4 KiB random I/O through vhost-user-blk: vdm-vhost-user-blk vs qemu-storage-daemon.
bench-blk: all
	./configure --packages-only --extra-packages qemu-system-common
	build/bench/vdm-bench-blk --json build/bench-blk.json

# 64-byte frames through vhost-user-net: vdm-vhost-user-net vs DPDK's vhost PMD, driven by testpmd.
bench-net: all
	python3 bench/vdm-bench-net.py --vdm-daemon build/contrib/vhost-user-net/vdm-vhost-user-net \
	    --json build/bench-net.json

# A longer fuzzing session: make fuzz-long FUZZ_SECONDS=3600
FUZZ_SECONDS ?= 600
fuzz-long: configure
	ninja -C build-san -j2
	mkdir -p build-san/fuzz-corpus
	$(SAN_ENV) build-san/tests/fuzz/fuzz-virtqueue -max_total_time=$(FUZZ_SECONDS) \
	    build-san/fuzz-corpus tests/fuzz/corpus/virtqueue

clean:
	rm -rf build build-san
