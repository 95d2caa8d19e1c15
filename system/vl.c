/*
 * Command line and machine construction, in QEMU's syntax and meaning:
 *
 *   -machine|-M [type=]none|pc|pc-i440fx-X.Y|q35|pc-q35-X.Y|microvm[,memory-backend=ID][,accel=qtest]
 *   -accel [accel=]qtest        -m [size=]SIZE (MiB without suffix)
 *   -object memory-backend-{memfd,file,ram},id=ID,size=SIZE[,share=on|off][,mem-path=P]
 *   -chardev socket,id=ID,path=PATH[,server=on|off][,wait=on|off][,reconnect=S|reconnect-ms=MS]
 *   -qtest unix:PATH[,server=on[,wait=off]] | chardev:ID      -qtest-log FILE
 *   -qmp unix:PATH[,server=on[,wait=off]] | chardev:ID        -mon chardev=ID,mode=control
 *   -drive file=IMG,if=none,id=D[,format=raw][,aio=..]   -blockdev driver=file|null-co,node-name=D,...
 *   -device TYPE[,addr=SLOT[.FN]][,prop=value...]   (-device help, -device TYPE,help)
 *   -netdev TYPE,id=ID[,prop=value...]   (tap, socket, stream, hubport: net/; -netdev help)
 *   -display none  -nodefaults  -nographic  -S  -name [guest=]NAME  -version  -help
 *
 * Errors are reported like QEMU's error_report() with the option as location
 * ("vdm: -foo: invalid option") and exit 1.
 *
 * Guest RAM layout (docs/device-host.md): "none" maps all RAM at gpa 0
 * (default size 0); "pc" (default 128 MiB) maps RAM at 0 up to 3.5 GiB of
 * RAM, and with 3.5 GiB or more puts 3 GiB below 4 GiB and the rest at
 * 4 GiB, as QEMU's i440fx pc machine does with gigabyte alignment; "q35"
 * keeps RAM below 0xb0000000 low and otherwise puts 2 GiB low; "microvm"
 * puts at most 3 GiB low. The rest goes to 4 GiB. pc, q35 and microvm have
 * fw_cfg (hw/nvram/fw_cfg.c) with RAM size, CPUs and etc/e820; microvm has
 * virtio-mmio transports (hw/virtio/virtio-mmio.c) instead of PCI.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib-unix.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hw/nvram/fw_cfg.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio-mmio.h"
#include "net/net.h"
#include "sysemu/chardev.h"
#include "sysemu/blockdev.h"
#include "sysemu/qdev.h"
#include "sysemu/qmp.h"
#include "sysemu/qtest.h"
#include "sysemu/sysemu.h"

#define PC_LOWMEM_SPLIT 0xe0000000ull   /* pc: RAM at or above this size is split ... */
#define PC_BELOW_4G     0xc0000000ull   /* ... 3 GiB below 4 GiB (gigabyte aligned) */
#define Q35_LOWMEM_SPLIT 0xb0000000ull  /* q35: RAM at or above this size is split ... */
#define Q35_BELOW_4G    0x80000000ull   /* ... 2 GiB below 4 GiB */
#define MICROVM_BELOW_4G 0xc0000000ull  /* microvm: at most 3 GiB below 4 GiB */
#define FOUR_GIB        0x100000000ull

static const char *progname = "vdm";
static const char *cur_opt, *cur_arg;     /* error location */

static G_GNUC_NORETURN G_GNUC_PRINTF(1, 2) void die(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "%s: ", progname);
    if (cur_opt) {
        fprintf(stderr, "-%s%s%s: ", cur_opt, cur_arg ? " " : "", cur_arg ? cur_arg : "");
    }
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* ---- QemuOpts-style "key=value,key=value" with an implied first key ---- */

typedef struct Opts {
    GPtrArray *keys, *vals;
} Opts;

static void opts_free(Opts *o)
{
    g_ptr_array_free(o->keys, TRUE);
    g_ptr_array_free(o->vals, TRUE);
}

/* Read up to ',' or '=' (stop set) with ",," meaning a literal comma. */
static char *opts_token(const char **p, bool stop_at_eq)
{
    GString *s = g_string_new(NULL);

    while (**p) {
        if (**p == ',') {
            if ((*p)[1] == ',') {
                g_string_append_c(s, ',');
                *p += 2;
                continue;
            }
            break;
        }
        if (stop_at_eq && **p == '=') {
            break;
        }
        g_string_append_c(s, *(*p)++);
    }
    return g_string_free(s, FALSE);
}

static void opts_parse(Opts *o, const char *str, const char *implied)
{
    const char *p = str;
    bool first = true;

    o->keys = g_ptr_array_new_with_free_func(g_free);
    o->vals = g_ptr_array_new_with_free_func(g_free);
    while (*p) {
        char *key = opts_token(&p, true), *val;

        if (*p == '=') {
            p++;
            val = opts_token(&p, false);
        } else if (first && implied) {
            val = key;
            key = g_strdup(implied);
        } else {
            val = g_strdup("on");
        }
        if (!*key) {
            die("Invalid parameter ''");
        }
        g_ptr_array_add(o->keys, key);
        g_ptr_array_add(o->vals, val);
        first = false;
        if (*p == ',') {
            p++;
        }
    }
}

/* Last value for @key (later ones override, as QemuOpts), or NULL. */
static const char *opts_get(const Opts *o, const char *key)
{
    guint i;

    for (i = o->keys->len; i-- > 0;) {
        if (strcmp(g_ptr_array_index(o->keys, i), key) == 0) {
            return g_ptr_array_index(o->vals, i);
        }
    }
    return NULL;
}

/* Die on a key not in @allowed (NULL-terminated); @what formats the QEMU message. */
static void opts_check(const Opts *o, const char *const *allowed, const char *prop_prefix)
{
    guint i;

    for (i = 0; i < o->keys->len; i++) {
        const char *key = g_ptr_array_index(o->keys, i);
        const char *const *a;

        for (a = allowed; *a && strcmp(*a, key) != 0; a++) {
        }
        if (!*a) {
            if (prop_prefix) {
                die("Property '%s.%s' not found", prop_prefix, key);
            }
            die("Invalid parameter '%s'", key);
        }
    }
}

static bool parse_bool(const char *name, const char *v)
{
    if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "y")) {
        return true;
    }
    if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "n")) {
        return false;
    }
    die("Parameter '%s' expects 'on' or 'off'", name);
}

/*
 * A size as QEMU's qemu_strtosz: decimal number with an optional binary
 * suffix B/K/M/G/T/P/E; no suffix means @default_unit.
 */
static uint64_t parse_size(const char *name, const char *str, uint64_t default_unit)
{
    uint64_t n, unit = default_unit;
    char *end;

    if (!str || !g_ascii_isdigit(*str)) {
        goto bad;
    }
    errno = 0;
    n = g_ascii_strtoull(str, &end, 10);
    if (errno) {
        goto bad;
    }
    if (*end) {
        switch (g_ascii_toupper(*end)) {
        case 'B': unit = 1; break;
        case 'K': unit = 1ull << 10; break;
        case 'M': unit = 1ull << 20; break;
        case 'G': unit = 1ull << 30; break;
        case 'T': unit = 1ull << 40; break;
        case 'P': unit = 1ull << 50; break;
        case 'E': unit = 1ull << 60; break;
        default: goto bad;
        }
        if (end[1]) {
            goto bad;
        }
    }
    if (n > UINT64_MAX / unit) {
        goto bad;
    }
    return n * unit;
bad:
    die("Parameter '%s' expects a non-negative number below 2^64\n"
        "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
        "and exabytes, respectively.", name);
}

/* ---- memory backends ---- */

typedef struct HostMemoryBackend {
    char *id;
    char *type;
    uint64_t size;
    bool share;
    int fd;                 /* memfd/file; -1 for anonymous RAM */
    void *host;
    bool used;
} HostMemoryBackend;

static GPtrArray *backends;

static HostMemoryBackend *backend_find(const char *id)
{
    guint i;

    for (i = 0; backends && i < backends->len; i++) {
        HostMemoryBackend *b = g_ptr_array_index(backends, i);
        if (strcmp(b->id, id) == 0) {
            return b;
        }
    }
    return NULL;
}

static void *map_ram(const char *id, int fd, uint64_t size, bool share)
{
    int flags = (share ? MAP_SHARED : MAP_PRIVATE) | MAP_NORESERVE | (fd < 0 ? MAP_ANONYMOUS : 0);
    void *p;

    if (size > SIZE_MAX) {
        die("cannot set up guest memory '%s': %s", id, g_strerror(ENOMEM));
    }
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, fd, 0);
    if (p == MAP_FAILED) {
        die("cannot set up guest memory '%s': %s", id, g_strerror(errno));
    }
    return p;
}

static void object_add(const char *arg)
{
    static const char *const memfd_props[] = { "qom-type", "id", "size", "share", NULL };
    static const char *const file_props[] = { "qom-type", "id", "size", "share", "mem-path", NULL };
    HostMemoryBackend *b;
    const char *type, *id, *size, *path;
    Opts o;

    opts_parse(&o, arg, "qom-type");
    type = opts_get(&o, "qom-type");
    if (!type) {
        die("Parameter 'qom-type' is missing");
    }
    if (strcmp(type, "memory-backend-memfd") && strcmp(type, "memory-backend-file") &&
        strcmp(type, "memory-backend-ram")) {
        die("invalid object type: %s", type);
    }
    opts_check(&o, strcmp(type, "memory-backend-file") ? memfd_props : file_props, type);
    id = opts_get(&o, "id");
    if (!id) {
        die("Parameter 'id' is missing");
    }
    if (backend_find(id)) {
        die("attempt to add duplicate property '%s' to object (type 'container')", id);
    }
    b = g_new0(HostMemoryBackend, 1);
    b->id = g_strdup(id);
    b->type = g_strdup(type);
    b->fd = -1;
    size = opts_get(&o, "size");
    b->size = size ? parse_size("size", size, 1) : 0;
    if (b->size == 0) {
        die("can't create backend with size 0");
    }
    /* memfd defaults to share=on, file and ram to off, as in QEMU */
    b->share = opts_get(&o, "share") ? parse_bool("share", opts_get(&o, "share"))
                                     : strcmp(type, "memory-backend-memfd") == 0;
    if (strcmp(type, "memory-backend-memfd") == 0) {
        b->fd = memfd_create(id, MFD_CLOEXEC);
        if (b->fd < 0 || ftruncate(b->fd, (off_t)b->size) < 0) {
            die("failed to create memfd: %s", g_strerror(errno));
        }
    } else if (strcmp(type, "memory-backend-file") == 0) {
        struct stat st;

        path = opts_get(&o, "mem-path");
        if (!path) {
            die("mem-path property not set");
        }
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            /* a directory: an unlinked temporary file inside it, as QEMU does */
            char *tmpl = g_strdup_printf("%s/vdm_back_mem.%s.XXXXXX", path, id);
            b->fd = mkostemp(tmpl, O_CLOEXEC);
            if (b->fd >= 0) {
                unlink(tmpl);
            }
            g_free(tmpl);
        } else {
            b->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        }
        if (b->fd < 0) {
            die("can't open backing store %s for guest RAM: %s", path, g_strerror(errno));
        }
        if (fstat(b->fd, &st) == 0 && (uint64_t)st.st_size < b->size &&
            ftruncate(b->fd, (off_t)b->size) < 0) {
            die("can't resize backing store %s: %s", path, g_strerror(errno));
        }
    }
    b->host = map_ram(id, b->fd, b->size, b->share);
    if (!backends) {
        backends = g_ptr_array_new();
    }
    g_ptr_array_add(backends, b);
    opts_free(&o);
}

/* ---- machine ---- */

typedef enum MachinePCI {
    MACHINE_PCI_NONE,
    MACHINE_PCI_I440FX,
    MACHINE_PCI_Q35,
} MachinePCI;

typedef struct MachineClass {
    const char *name;
    const char *alias_of;       /* the versioned QEMU name "name" stands for, or NULL */
    const char *desc;
    bool is_default;
    uint64_t default_ram_size;
    MachinePCI pci;
    bool fw_cfg;
    /* Bytes of RAM mapped below 4 GiB for @ram_size (the rest goes to 4 GiB); NULL: all at 0. */
    uint64_t (*lowmem)(uint64_t ram_size);
    bool virtio_mmio;           /* virtio-mmio transports as QEMU's microvm has them */
} MachineClass;

/*
 * QEMU's i440fx pc: RAM below 0xe0000000 stays below 4 GiB; more is split
 * with gigabyte alignment (3 GiB low), as pc_init1 with gigabyte_align.
 */
static uint64_t pc_lowmem(uint64_t ram_size)
{
    return ram_size >= PC_LOWMEM_SPLIT ? PC_BELOW_4G : ram_size;
}

/* QEMU's q35 (pc_q35_init): 2 GiB low once RAM reaches 0xb0000000 (the MMCONFIG base), else all low. */
static uint64_t q35_lowmem(uint64_t ram_size)
{
    return ram_size >= Q35_LOWMEM_SPLIT ? Q35_BELOW_4G : ram_size;
}

/* QEMU's microvm (microvm_memory_init): at most 3 GiB low. */
static uint64_t microvm_lowmem(uint64_t ram_size)
{
    return MIN(ram_size, MICROVM_BELOW_4G);
}

static const MachineClass machines[] = {
    { "pc", "pc-i440fx-7.2", "Standard PC (i440FX + PIIX, 1996) (vdm: RAM, fw_cfg, PCI bus with an i440FX host bridge)",
      true, 128ull << 20, MACHINE_PCI_I440FX, true, pc_lowmem, false },
    { "q35", "pc-q35-7.2", "Standard PC (Q35 + ICH9, 2009) (vdm: RAM, fw_cfg, PCIe root bus with MMCONFIG)",
      false, 128ull << 20, MACHINE_PCI_Q35, true, q35_lowmem, false },
    { "microvm", NULL, "microvm (i386) (vdm: RAM, fw_cfg, 24 virtio-mmio transports; no PCI)",
      false, 128ull << 20, MACHINE_PCI_NONE, true, microvm_lowmem, true },
    { "none", NULL, "empty machine", false, 0, MACHINE_PCI_NONE, false, NULL, false },
};

static const MachineClass *machine_class;
static GuestMemory guest_memory;
static uint64_t ram_size, ram_below_4g;
static char *guest_name;
static FWCfgState *fw_cfg;

int vdm_ram_fd(const void *host, uint64_t *offset)
{
    for (guint i = 0; backends && i < backends->len; i++) {
        HostMemoryBackend *b = g_ptr_array_index(backends, i);
        const uint8_t *p = host;

        if (b->share && b->fd >= 0 && p >= (uint8_t *)b->host && p < (uint8_t *)b->host + b->size) {
            *offset = (uint64_t)(p - (uint8_t *)b->host);
            return b->fd;
        }
    }
    return -1;
}

GuestMemory *vdm_guest_memory(void)
{
    return &guest_memory;
}

uint64_t vdm_ram_size(void)
{
    return ram_size;
}

const char *vdm_machine_name(void)
{
    return machine_class ? machine_class->name : "none";
}

const char *vdm_guest_name(void)
{
    return guest_name;
}

/* QEMU's default-ram-id of @mc (also the name of its RAM mapping). */
static const char *machine_ram_id(const MachineClass *mc)
{
    return mc->pci != MACHINE_PCI_NONE ? "pc.ram" : mc->virtio_mmio ? "microvm.ram" : "ram";
}

void vdm_machine_foreach(MachineForeachFn *fn, void *opaque)
{
    for (size_t k = 0; k < G_N_ELEMENTS(machines); k++) {
        const MachineClass *mc = &machines[k];

        /* QEMU lists the versioned name with its short alias */
        fn(mc->alias_of ? mc->alias_of : mc->name, mc->alias_of ? mc->name : NULL, mc->is_default,
           machine_ram_id(mc), opaque);
    }
}

/* The machine class for -machine type=@type: a name, its versioned alias, or any pc-i440fx-X / pc-q35-X. */
static const MachineClass *machine_find(const char *type)
{
    for (size_t k = 0; k < G_N_ELEMENTS(machines); k++) {
        const MachineClass *mc = &machines[k];

        if (!strcmp(mc->name, type) || (mc->alias_of && !strcmp(mc->alias_of, type))) {
            return mc;
        }
        if (mc->alias_of && g_str_has_prefix(type, "pc-") &&
            !strncmp(type, mc->alias_of, strrchr(mc->alias_of, '-') + 1 - mc->alias_of)) {
            return mc;      /* another machine version: the same hardware here */
        }
    }
    return NULL;
}

static void add_ram(hwaddr gpa, uint64_t size, uint8_t *host)
{
    if (guest_memory_add(&guest_memory, gpa, size, host, true) < 0) {
        die("cannot map guest RAM at 0x%" PRIx64, gpa);
    }
}

/* @m_size: the -m size, 0 when not given. */
static void machine_init_ram(const char *backend_id, uint64_t m_size)
{
    HostMemoryBackend *b = NULL;
    uint8_t *host;

    guest_memory_init(&guest_memory);
    ram_size = m_size ? m_size : machine_class->default_ram_size;
    if (backend_id) {
        b = backend_find(backend_id);
        if (!b) {
            cur_opt = "machine";
            cur_arg = NULL;
            die("Memory backend '%s' not found", backend_id);
        }
        if (m_size && m_size != b->size) {
            die("Machine memory-backend size (%" PRIu64 ") doesn't match the value of -m (%" PRIu64 ")",
                b->size, ram_size);
        }
        ram_size = b->size;
        b->used = true;
    }
    ram_below_4g = machine_class->lowmem ? machine_class->lowmem(ram_size) : ram_size;
    if (ram_size == 0) {
        return;
    }
    host = b ? b->host : map_ram(machine_ram_id(machine_class), -1, ram_size, false);
    add_ram(0, ram_below_4g, host);
    if (ram_size > ram_below_4g) {
        add_ram(FOUR_GIB, ram_size - ram_below_4g, host + ram_below_4g);
    }
}

/* -machine acpi=, ioapic2= (microvm): 1 on, 0 off, -1 auto. */
static int machine_acpi = -1, machine_ioapic2 = -1;

static int parse_on_off_auto(const char *name, const char *v)
{
    if (!strcmp(v, "auto")) {
        return -1;
    }
    return parse_bool(name, v);
}

/*
 * microvm's transports as QEMU's microvm_devices_init places them: with ACPI
 * (the default) and the second IOAPIC (default with ACPI) 24 transports on
 * GSI 24-47; ACPI without it 8 on GSI 16-23; no ACPI 8 on GSI 5-12.
 */
static void machine_init_virtio_mmio(void)
{
    if (machine_acpi == 0) {
        virtio_mmio_transports_init(VIRTIO_MMIO_BASE, 8, 5);
    } else if (machine_ioapic2 == 0) {
        virtio_mmio_transports_init(VIRTIO_MMIO_BASE, 8, 16);
    } else {
        virtio_mmio_transports_init(VIRTIO_MMIO_BASE, VIRTIO_MMIO_MAX_TRANSPORTS, VIRTIO_MMIO_IRQ_BASE);
    }
}

static void e820_put(uint8_t *e, uint64_t addr, uint64_t len, uint32_t type)
{
    for (int i = 0; i < 8; i++) {
        e[i] = (uint8_t)(addr >> (8 * i));
        e[8 + i] = (uint8_t)(len >> (8 * i));
    }
    for (int i = 0; i < 4; i++) {
        e[16 + i] = (uint8_t)(type >> (8 * i));
    }
}

/* fw_cfg with the items QEMU's x86 machines give (fw_cfg_arch_create, pc_memory_init). */
static void machine_init_fw_cfg(void)
{
    uint8_t e820[2 * E820_ENTRY_SIZE];
    size_t n = 0;

    fw_cfg = fw_cfg_init_io_dma(&guest_memory);
    fw_cfg_add_i16(fw_cfg, FW_CFG_NB_CPUS, 1);
    fw_cfg_add_i16(fw_cfg, FW_CFG_MAX_CPUS, 1);
    fw_cfg_add_i64(fw_cfg, FW_CFG_RAM_SIZE, ram_size);
    fw_cfg_add_i32(fw_cfg, FW_CFG_IRQ0_OVERRIDE, 1);
    if (ram_below_4g) {
        e820_put(e820, 0, ram_below_4g, E820_RAM);
        n++;
    }
    if (ram_size > ram_below_4g) {
        e820_put(e820 + n * E820_ENTRY_SIZE, FOUR_GIB, ram_size - ram_below_4g, E820_RAM);
        n++;
    }
    fw_cfg_add_file(fw_cfg, "etc/e820", e820, n * E820_ENTRY_SIZE);
    fw_cfg_add_file(fw_cfg, "bootorder", "", 0);    /* no boot devices: empty, as QEMU */
}

static void register_types(void)
{
    type_register_simple("object", NULL, true);
    type_register_simple("machine", "object", true);
    type_register_simple("none-machine", "machine", false);
    for (size_t k = 0; k < G_N_ELEMENTS(machines); k++) {
        char *t = g_strdup_printf("%s-machine", machines[k].alias_of ? machines[k].alias_of
                                                                    : machines[k].name);
        if (strcmp(machines[k].name, "none")) {
            type_register_simple(t, "machine", false);
        }
        g_free(t);
    }
    type_register_simple("accel", "object", true);
    type_register_simple("qtest-accel", "accel", false);
    type_register_simple("memory-backend", "object", true);
    type_register_simple("memory-backend-ram", "memory-backend", false);
    type_register_simple("memory-backend-memfd", "memory-backend", false);
    type_register_simple("memory-backend-file", "memory-backend", false);
    type_register_simple("chardev", "object", true);
    type_register_simple("chardev-socket", "chardev", false);
    qdev_register_types();
}

/* Opts as the QDevOpt array system/qdev.c takes (borrowed strings). */
static QDevOpt *opts_to_qdev(const Opts *o)
{
    QDevOpt *q = g_new0(QDevOpt, o->keys->len + 1);

    for (guint i = 0; i < o->keys->len; i++) {
        q[i].key = g_ptr_array_index(o->keys, i);
        q[i].val = g_ptr_array_index(o->vals, i);
    }
    return q;
}

/* -OPT ARG for each of @args (@implied: the first key's name): parse, @create, die on failure. */
static void create_all(GPtrArray *args, const char *opt, const char *implied,
                       bool (*create)(const QDevOpt *opts, unsigned n, char **errp))
{
    char *err = NULL;

    for (guint i = 0; i < args->len; i++) {
        Opts o;
        QDevOpt *q;

        cur_opt = opt;
        cur_arg = g_ptr_array_index(args, i);
        opts_parse(&o, cur_arg, implied);
        q = opts_to_qdev(&o);
        if (!create(q, o.keys->len, &err)) {
            die("%s", err);
        }
        g_free(q);
        opts_free(&o);
    }
}

/* ---- chardevs ---- */

static Chardev *chardev_add(const char *arg)
{
    static const char *const props[] = { "backend", "id", "path", "server", "wait", "reconnect",
                                         "reconnect-ms", NULL };
    const char *backend, *id, *path, *server, *wait, *reconnect;
    Chardev *chr;
    char *err = NULL;
    Opts o;

    opts_parse(&o, arg, "backend");
    backend = opts_get(&o, "backend");
    if (!backend) {
        die("chardev: \"backend\" not specified");
    }
    if (strcmp(backend, "socket")) {
        die("'%s' is not a valid char driver name (vdm has 'socket' only)", backend);
    }
    opts_check(&o, props, NULL);
    id = opts_get(&o, "id");
    if (!id) {
        die("Parameter 'id' is missing");
    }
    path = opts_get(&o, "path");
    if (!path) {
        die("chardev: socket: only UNIX sockets are supported: 'path' is missing");
    }
    server = opts_get(&o, "server");
    wait = opts_get(&o, "wait");
    chr = chardev_socket_new(id, path, server && parse_bool("server", server),
                             !wait || parse_bool("wait", wait), &err);
    if (!chr) {
        die("%s", err);
    }
    /* reconnect=SECONDS (QEMU), reconnect-ms=MS (QEMU 9.2): a client retries after a disconnect */
    reconnect = opts_get(&o, "reconnect-ms");
    if (reconnect || (reconnect = opts_get(&o, "reconnect"))) {
        char *end;
        unsigned long v = strtoul(reconnect, &end, 10);

        if (end == reconnect || *end || v > 3600000 || reconnect[0] == '-') {
            die("Parameter '%s' expects uint64", opts_get(&o, "reconnect-ms") ? "reconnect-ms" : "reconnect");
        }
        if (!opts_get(&o, "reconnect-ms")) {
            v = v > 3600 ? 3600000 : v * 1000;
        }
        chardev_set_reconnect_ms(chr, (unsigned)v);
    }
    if (server && parse_bool("server", server) && (!wait || parse_bool("wait", wait)) &&
        !chardev_wait_connected(chr, &err)) {
        die("%s", err);
    }
    opts_free(&o);
    return chr;
}

/* "unix:PATH[,server=on][,wait=off]" (also ",server" ",nowait") or "chardev:ID". */
static Chardev *chardev_compat(const char *spec, const char *id)
{
    const char *rest;
    GString *conv;
    char **parts;
    Chardev *chr;
    unsigned i;

    if (g_str_has_prefix(spec, "chardev:")) {
        chr = chardev_find(spec + strlen("chardev:"));
        if (!chr) {
            die("chardev '%s' not found", spec + strlen("chardev:"));
        }
        return chr;
    }
    if (!g_str_has_prefix(spec, "unix:")) {
        die("'%s' is not a supported chardev (vdm: unix:PATH or chardev:ID)", spec);
    }
    rest = spec + strlen("unix:");
    parts = g_strsplit(rest, ",", 0);
    conv = g_string_new("socket,id=");
    g_string_append(conv, id);
    g_string_append(conv, ",path=");
    for (i = 0; parts[i]; i++) {
        if (i == 0) {
            g_string_append(conv, parts[0]);
        } else if (strcmp(parts[i], "server") == 0) {
            g_string_append(conv, ",server=on");
        } else if (strcmp(parts[i], "nowait") == 0) {
            g_string_append(conv, ",wait=off");
        } else {
            g_string_append_c(conv, ',');
            g_string_append(conv, parts[i]);
        }
    }
    g_strfreev(parts);
    chr = chardev_add(conv->str);
    g_string_free(conv, TRUE);
    return chr;
}

/* ---- options ---- */

typedef enum OptIndex {
    OPT_MACHINE, OPT_ACCEL, OPT_M, OPT_OBJECT, OPT_CHARDEV, OPT_QTEST, OPT_QTEST_LOG, OPT_QMP,
    OPT_MON, OPT_DEVICE, OPT_NETDEV, OPT_DRIVE, OPT_BLOCKDEV, OPT_DISPLAY, OPT_NODEFAULTS, OPT_NOGRAPHIC, OPT_S, OPT_NAME, OPT_VERSION, OPT_HELP,
} OptIndex;

typedef struct VdmOption {
    const char *name;
    bool has_arg;
    OptIndex index;
    const char *help;
} VdmOption;

static const VdmOption options[] = {
    { "machine", true, OPT_MACHINE, "[type=]pc|q35|microvm|none[,memory-backend=ID]  select the machine" },
    { "M", true, OPT_MACHINE, NULL },
    { "accel", true, OPT_ACCEL, "qtest                   the accelerator (the only one)" },
    { "m", true, OPT_M, "[size=]SIZE[M|G]             guest RAM size (MiB without suffix)" },
    { "object", true, OPT_OBJECT, "memory-backend-{memfd,file,ram},id=ID,size=SIZE[,share=on][,mem-path=P]" },
    { "chardev", true, OPT_CHARDEV, "socket,id=ID,path=PATH[,server=on][,wait=off][,reconnect-ms=MS]" },
    { "qtest", true, OPT_QTEST, "unix:PATH[,server=on,wait=off]|chardev:ID  the qtest socket" },
    { "qtest-log", true, OPT_QTEST_LOG, "FILE                 log qtest traffic" },
    { "qmp", true, OPT_QMP, "unix:PATH[,server=on,wait=off]|chardev:ID    a QMP monitor" },
    { "mon", true, OPT_MON, "chardev=ID,mode=control        a QMP monitor on a chardev" },
    { "device", true, OPT_DEVICE, "TYPE[,addr=SLOT[.FN]][,prop=value...]  add a device (help lists)" },
    { "netdev", true, OPT_NETDEV, "TYPE,id=ID[,prop=value...]  a net backend (tap, socket, stream, hubport)" },
    { "drive", true, OPT_DRIVE, "file=IMG,if=none,id=ID[,format=raw][,aio=threads|io_uring][,readonly=on]" },
    { "blockdev", true, OPT_BLOCKDEV, "driver=file|null-co,node-name=ID[,filename=IMG][,size=N]" },
    { "display", true, OPT_DISPLAY, "none               (the only display)" },
    { "nodefaults", false, OPT_NODEFAULTS, "                 no default devices (there are none)" },
    { "nographic", false, OPT_NOGRAPHIC, "                  no graphics (there are none)" },
    { "S", false, OPT_S, "                          do not start (query-status: prelaunch)" },
    { "name", true, OPT_NAME, "[guest=]NAME          the guest name" },
    { "version", false, OPT_VERSION, "                    print the version and exit" },
    { "help", false, OPT_HELP, "                       this help" },
    { "h", false, OPT_HELP, NULL },
};

static void print_help(void)
{
    size_t i;

    printf("usage: %s [options]\n\n", progname);
    for (i = 0; i < G_N_ELEMENTS(options); i++) {
        if (options[i].help) {
            printf("-%s %s\n", options[i].name, options[i].help);
        }
    }
}

static bool is_help(const char *arg)
{
    return strcmp(arg, "help") == 0 || strcmp(arg, "?") == 0;
}

static GMainLoop *main_loop;
static FILE *qtest_log_fp;

static gboolean on_signal(gpointer opaque)
{
    vdm_shutdown_request("host-signal");
    return G_SOURCE_CONTINUE;
}

void vdm_init(int argc, char **argv)
{
    GPtrArray *objects = g_ptr_array_new(), *chardevs_args = g_ptr_array_new();
    GPtrArray *qmp_args = g_ptr_array_new(), *mon_args = g_ptr_array_new();
    GPtrArray *device_args = g_ptr_array_new(), *drive_args = g_ptr_array_new_with_free_func(g_free);
    GPtrArray *netdev_args = g_ptr_array_new();
    const char *machine_arg = NULL, *m_arg = NULL, *qtest_arg = NULL, *qtest_log = NULL;
    char *backend_id = NULL;
    bool autostart = true;
    char *err = NULL;
    guint i;
    int argi;

    progname = argv[0] ? strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0] : "vdm";
    for (argi = 1; argi < argc; argi++) {
        const char *arg = argv[argi], *name = arg + 1;
        const VdmOption *opt = NULL;
        const char *oarg = NULL;
        size_t k;

        cur_opt = NULL;
        cur_arg = NULL;
        if (arg[0] != '-') {
            die("%s: bare disk images are not supported", arg);
        }
        if (name[0] == '-') {
            name++;         /* --option works too, as in QEMU */
        }
        for (k = 0; k < G_N_ELEMENTS(options); k++) {
            if (strcmp(options[k].name, name) == 0) {
                opt = &options[k];
                break;
            }
        }
        cur_opt = name;
        if (!opt) {
            die("invalid option");
        }
        if (opt->has_arg) {
            if (argi + 1 >= argc) {
                die("requires an argument");
            }
            oarg = argv[++argi];
            cur_arg = oarg;
        }
        switch (opt->index) {
        case OPT_MACHINE: {
            static const char *const props[] = { "type", "memory-backend", "accel", "acpi", "ioapic2", NULL };
            Opts o;
            const char *type;

            opts_parse(&o, oarg, "type");
            type = opts_get(&o, "type");
            if (type && is_help(type)) {
                printf("Supported machines are:\n");
                for (k = 0; k < G_N_ELEMENTS(machines); k++) {
                    if (machines[k].alias_of) {
                        printf("%-20s %s (alias of %s)\n", machines[k].name, machines[k].desc,
                               machines[k].alias_of);
                    }
                    printf("%-20s %s%s\n", machines[k].alias_of ? machines[k].alias_of : machines[k].name,
                           machines[k].desc, machines[k].is_default ? " (default)" : "");
                }
                exit(0);
            }
            opts_check(&o, props, NULL);
            if (type) {
                machine_arg = oarg;
                machine_class = machine_find(type);
                if (!machine_class) {
                    die("unsupported machine type\nUse -machine help to list supported machines");
                }
            }
            if (opts_get(&o, "memory-backend")) {
                g_free(backend_id);
                backend_id = g_strdup(opts_get(&o, "memory-backend"));
            }
            if (opts_get(&o, "accel") && strcmp(opts_get(&o, "accel"), "qtest")) {
                die("invalid accelerator %s", opts_get(&o, "accel"));
            }
            if (opts_get(&o, "acpi")) {
                machine_acpi = parse_on_off_auto("acpi", opts_get(&o, "acpi"));
            }
            if (opts_get(&o, "ioapic2")) {
                machine_ioapic2 = parse_on_off_auto("ioapic2", opts_get(&o, "ioapic2"));
            }
            opts_free(&o);
            break;
        }
        case OPT_ACCEL: {
            static const char *const props[] = { "accel", NULL };
            Opts o;
            const char *acc;

            opts_parse(&o, oarg, "accel");
            acc = opts_get(&o, "accel");
            if (acc && is_help(acc)) {
                printf("Accelerators supported in QEMU binary:\nqtest\n");
                exit(0);
            }
            opts_check(&o, props, NULL);
            if (!acc || strcmp(acc, "qtest")) {
                die("invalid accelerator %s", acc ? acc : "");
            }
            opts_free(&o);
            break;
        }
        case OPT_M: {
            static const char *const props[] = { "size", NULL };
            Opts o;

            opts_parse(&o, oarg, "size");
            opts_check(&o, props, NULL);
            if (!opts_get(&o, "size")) {
                die("Parameter 'size' is missing");
            }
            m_arg = oarg;
            ram_size = parse_size("size", opts_get(&o, "size"), 1ull << 20);
            if (ram_size == 0) {
                die("ram size too small");
            }
            opts_free(&o);
            break;
        }
        case OPT_OBJECT:
            g_ptr_array_add(objects, (gpointer)oarg);
            break;
        case OPT_CHARDEV:
            g_ptr_array_add(chardevs_args, (gpointer)oarg);
            break;
        case OPT_QTEST:
            qtest_arg = oarg;
            break;
        case OPT_QTEST_LOG:
            qtest_log = oarg;
            break;
        case OPT_QMP:
            g_ptr_array_add(qmp_args, (gpointer)oarg);
            break;
        case OPT_MON:
            g_ptr_array_add(mon_args, (gpointer)oarg);
            break;
        case OPT_DEVICE: {
            Opts o;
            QDevOpt *q;

            opts_parse(&o, oarg, "driver");
            q = opts_to_qdev(&o);
            if (device_help(q, o.keys->len)) {
                exit(0);
            }
            g_free(q);
            opts_free(&o);
            g_ptr_array_add(device_args, (gpointer)oarg);
            break;
        }
        case OPT_NETDEV: {
            Opts o;
            QDevOpt *q;

            opts_parse(&o, oarg, "type");
            q = opts_to_qdev(&o);
            if (netdev_help(q, o.keys->len)) {
                exit(0);
            }
            g_free(q);
            opts_free(&o);
            g_ptr_array_add(netdev_args, (gpointer)oarg);
            break;
        }
        case OPT_DRIVE:
        case OPT_BLOCKDEV:
            /* the option name travels with the argument: "d" drive, "b" blockdev */
            g_ptr_array_add(drive_args, g_strconcat(opt->index == OPT_DRIVE ? "d" : "b", oarg, NULL));
            break;
        case OPT_DISPLAY:
            if (strcmp(oarg, "none") != 0) {
                die("Display '%s' is not available (vdm has 'none' only)", oarg);
            }
            break;
        case OPT_NODEFAULTS:
        case OPT_NOGRAPHIC:
            break;
        case OPT_S:
            autostart = false;
            break;
        case OPT_NAME: {
            static const char *const props[] = { "guest", "debug-threads", "process", NULL };
            Opts o;

            opts_parse(&o, oarg, "guest");
            opts_check(&o, props, NULL);
            g_free(guest_name);
            guest_name = g_strdup(opts_get(&o, "guest"));
            opts_free(&o);
            break;
        }
        case OPT_VERSION:
            printf("vdm version " VDM_VERSION "\n");
            exit(0);
        case OPT_HELP:
            print_help();
            exit(0);
        }
    }
    cur_opt = cur_arg = NULL;

    if (!machine_class) {
        machine_class = &machines[0];      /* the default, as QEMU's x86 default is pc */
    }
    if (machine_ioapic2 != -1 && !machine_class->virtio_mmio) {
        cur_opt = "machine";
        cur_arg = machine_arg;
        die("Property '%s-machine.ioapic2' not found",
            machine_class->alias_of ? machine_class->alias_of : machine_class->name);
    }
    register_types();

    /* objects first: the machine's memory-backend refers to one */
    for (i = 0; i < objects->len; i++) {
        cur_opt = "object";
        cur_arg = g_ptr_array_index(objects, i);
        object_add(cur_arg);
    }
    cur_opt = m_arg ? "m" : machine_arg ? "machine" : NULL;
    cur_arg = m_arg ? m_arg : machine_arg;
    machine_init_ram(backend_id, m_arg ? ram_size : 0);
    g_free(backend_id);
    backend_id = NULL;
    if (machine_class->fw_cfg) {
        machine_init_fw_cfg();
    }
    if (machine_class->pci != MACHINE_PCI_NONE) {
        pci_bus_init(machine_class->pci == MACHINE_PCI_Q35 ? PCI_HOST_Q35 : PCI_HOST_I440FX);
    }
    if (machine_class->virtio_mmio) {
        machine_init_virtio_mmio();
    }
    /* chardevs before devices: vhost-user devices name one (chardev=ID), as in QEMU */
    for (i = 0; i < chardevs_args->len; i++) {
        cur_opt = "chardev";
        cur_arg = g_ptr_array_index(chardevs_args, i);
        chardev_add(cur_arg);
    }
    for (i = 0; i < drive_args->len; i++) {
        const char *a = g_ptr_array_index(drive_args, i);
        Opts o;
        QDevOpt *q;

        cur_opt = a[0] == 'd' ? "drive" : "blockdev";
        cur_arg = a + 1;
        opts_parse(&o, cur_arg, NULL);
        q = opts_to_qdev(&o);
        if (!drive_new(q, o.keys->len, a[0] == 'b', &err)) {
            die("%s", err);
        }
        g_free(q);
        opts_free(&o);
    }
    /* netdevs before devices: a NIC's netdev= refers to one */
    create_all(netdev_args, "netdev", "type", netdev_new);
    g_ptr_array_free(netdev_args, TRUE);
    create_all(device_args, "device", "driver", device_new);
    cur_opt = cur_arg = NULL;
    g_ptr_array_free(device_args, TRUE);
    g_ptr_array_free(drive_args, TRUE);

    if (qtest_log) {
        cur_opt = "qtest-log";
        cur_arg = qtest_log;
        if (strcmp(qtest_log, "none") != 0) {
            qtest_log_fp = fopen(qtest_log, "w");
            if (!qtest_log_fp) {
                die("%s", g_strerror(errno));
            }
        }
    }
    if (qtest_arg) {
        cur_opt = "qtest";
        cur_arg = qtest_arg;
        if (!qtest_server_init(chardev_compat(qtest_arg, "qtest"), qtest_log_fp, &err)) {
            die("%s", err);
        }
    }
    for (i = 0; i < qmp_args->len; i++) {
        char *id = g_strdup_printf("compat_monitor%u", i);

        cur_opt = "qmp";
        cur_arg = g_ptr_array_index(qmp_args, i);
        if (!qmp_monitor_init(chardev_compat(cur_arg, id), &err)) {
            die("%s", err);
        }
        g_free(id);
    }
    for (i = 0; i < mon_args->len; i++) {
        static const char *const props[] = { "chardev", "mode", "pretty", NULL };
        const char *mode, *chr_id;
        Chardev *chr;
        Opts o;

        cur_opt = "mon";
        cur_arg = g_ptr_array_index(mon_args, i);
        opts_parse(&o, cur_arg, NULL);
        opts_check(&o, props, NULL);
        mode = opts_get(&o, "mode");
        chr_id = opts_get(&o, "chardev");
        if (!mode || strcmp(mode, "control")) {
            die("only mode=control (QMP) monitors are supported");
        }
        if (!chr_id) {
            die("Parameter 'chardev' is missing");
        }
        chr = chardev_find(chr_id);
        if (!chr) {
            die("chardev \"%s\" not found", chr_id);
        }
        if (!qmp_monitor_init(chr, &err)) {
            die("%s", err);
        }
        opts_free(&o);
    }
    cur_opt = cur_arg = NULL;
    g_ptr_array_free(objects, TRUE);
    g_ptr_array_free(chardevs_args, TRUE);
    g_ptr_array_free(qmp_args, TRUE);
    g_ptr_array_free(mon_args, TRUE);

    main_loop = g_main_loop_new(NULL, FALSE);
    vdm_set_main_loop(main_loop);
    g_unix_signal_add(SIGTERM, on_signal, NULL);
    g_unix_signal_add(SIGINT, on_signal, NULL);
    g_unix_signal_add(SIGHUP, on_signal, NULL);
    if (autostart) {
        vm_start();
    }
}

int vdm_main_loop(void)
{
    g_main_loop_run(main_loop);
    return 0;
}

void vdm_cleanup(void)
{
    guint i;

    /* devices first: they drain their requests before RAM goes away, and may still
     * use a chardev while unplugging (an INTx lowered towards the qtest socket) */
    qdev_cleanup();
    chardev_cleanup_all();
    if (virtio_mmio_bus_present()) {
        virtio_mmio_transports_cleanup();
    }
    net_cleanup();          /* after the NICs that used them */
    fw_cfg_destroy(fw_cfg);
    fw_cfg = NULL;
    if (qtest_log_fp) {
        fclose(qtest_log_fp);
    }
    for (i = 0; backends && i < backends->len; i++) {
        HostMemoryBackend *b = g_ptr_array_index(backends, i);
        munmap(b->host, b->size);
        if (b->fd >= 0) {
            close(b->fd);
        }
    }
    g_main_loop_unref(main_loop);
}
