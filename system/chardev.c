/*
 * Unix-socket character devices (see include/sysemu/chardev.h).
 */
#include <errno.h>
#include <glib.h>
#include <glib-unix.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sysemu/chardev.h"

struct Chardev {
    char *id;
    char *path;
    bool server;
    int listen_fd;          /* server only, -1 otherwise */
    int fd;                 /* connected peer, -1 if none */
    guint listen_watch, fd_watch;
    ChardevReadFn *read;
    ChardevEventFn *event;
    void *opaque;
    bool has_frontend;
    unsigned reconnect_ms;
};

static GPtrArray *chardevs;

Chardev *chardev_find(const char *id)
{
    guint i;

    for (i = 0; chardevs && i < chardevs->len; i++) {
        Chardev *chr = g_ptr_array_index(chardevs, i);
        if (strcmp(chr->id, id) == 0) {
            return chr;
        }
    }
    return NULL;
}

const char *chardev_id(const Chardev *chr)
{
    return chr->id;
}

bool chardev_is_connected(const Chardev *chr)
{
    return chr->fd >= 0;
}

static gboolean chardev_listen_ready(gint fd, GIOCondition cond, gpointer opaque);

static void chardev_disconnect(Chardev *chr)
{
    if (chr->fd < 0) {
        return;
    }
    if (chr->fd_watch) {
        g_source_remove(chr->fd_watch);
        chr->fd_watch = 0;
    }
    close(chr->fd);
    chr->fd = -1;
    if (chr->has_frontend) {
        chr->event(chr->opaque, CHR_EVENT_CLOSED);
    }
    if (chr->server && chr->listen_fd >= 0 && !chr->listen_watch) {
        chr->listen_watch = g_unix_fd_add(chr->listen_fd, G_IO_IN, chardev_listen_ready, chr);
    }
}

static gboolean chardev_fd_ready(gint fd, GIOCondition cond, gpointer opaque)
{
    Chardev *chr = opaque;
    uint8_t buf[4096];
    ssize_t n;

    n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        return G_SOURCE_CONTINUE;
    }
    if (n <= 0) {
        chr->fd_watch = 0;      /* the source goes away with G_SOURCE_REMOVE */
        chardev_disconnect(chr);
        return G_SOURCE_REMOVE;
    }
    if (chr->has_frontend) {
        chr->read(chr->opaque, buf, (size_t)n);
    }
    return G_SOURCE_CONTINUE;
}

static void chardev_connected(Chardev *chr, int fd)
{
    chr->fd = fd;
    if (chr->has_frontend) {
        chr->fd_watch = g_unix_fd_add(fd, G_IO_IN | G_IO_HUP | G_IO_ERR, chardev_fd_ready, chr);
        chr->event(chr->opaque, CHR_EVENT_OPENED);
    }
}

static gboolean chardev_listen_ready(gint fd, GIOCondition cond, gpointer opaque)
{
    Chardev *chr = opaque;
    int cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

    if (cfd < 0) {
        return G_SOURCE_CONTINUE;
    }
    chr->listen_watch = 0;
    chardev_connected(chr, cfd);
    return G_SOURCE_REMOVE;
}

static bool make_sockaddr(const char *path, struct sockaddr_un *sa, char **errp)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof(sa->sun_path)) {
        *errp = g_strdup_printf("UNIX socket path '%s' is too long", path);
        return false;
    }
    strcpy(sa->sun_path, path);
    return true;
}

Chardev *chardev_socket_new(const char *id, const char *path, bool server, bool wait, char **errp)
{
    struct sockaddr_un sa;
    Chardev *chr;
    int fd;

    if (chardev_find(id)) {
        *errp = g_strdup_printf("attempt to add duplicate property '%s' to object (type 'container')", id);
        return NULL;
    }
    if (!make_sockaddr(path, &sa, errp)) {
        return NULL;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *errp = g_strdup_printf("Failed to create socket: %s", g_strerror(errno));
        return NULL;
    }
    chr = g_new0(Chardev, 1);
    chr->id = g_strdup(id);
    chr->path = g_strdup(path);
    chr->server = server;
    chr->listen_fd = -1;
    chr->fd = -1;
    if (server) {
        unlink(path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
            *errp = g_strdup_printf("Failed to bind socket to %s: %s", path, g_strerror(errno));
            goto fail;
        }
        chr->listen_fd = fd;
        chr->listen_watch = g_unix_fd_add(fd, G_IO_IN, chardev_listen_ready, chr);
        (void)wait;             /* chardev_wait_connected() does the waiting */
    } else {
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
            *errp = g_strdup_printf("Failed to connect to '%s': %s", path, g_strerror(errno));
            goto fail;
        }
        chr->fd = fd;
    }
    if (!chardevs) {
        chardevs = g_ptr_array_new();
    }
    g_ptr_array_add(chardevs, chr);
    return chr;
fail:
    close(fd);
    g_free(chr->id);
    g_free(chr->path);
    g_free(chr);
    return NULL;
}

bool chardev_wait_connected(Chardev *chr, char **errp)
{
    int cfd;

    if (!chr->server || chr->fd >= 0) {
        return true;
    }
    fprintf(stderr, "vdm: waiting for connection on: disconnected:unix:%s,server=on\n", chr->path);
    do {
        cfd = accept4(chr->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    } while (cfd < 0 && errno == EINTR);
    if (cfd < 0) {
        *errp = g_strdup_printf("Failed to accept on %s: %s", chr->path, g_strerror(errno));
        return false;
    }
    if (chr->listen_watch) {
        g_source_remove(chr->listen_watch);
        chr->listen_watch = 0;
    }
    chardev_connected(chr, cfd);
    return true;
}

bool chardev_set_frontend(Chardev *chr, ChardevReadFn *read, ChardevEventFn *event, void *opaque)
{
    if (chr->has_frontend) {
        return false;
    }
    chr->read = read;
    chr->event = event;
    chr->opaque = opaque;
    chr->has_frontend = true;
    if (chr->fd >= 0) {
        chr->fd_watch = g_unix_fd_add(chr->fd, G_IO_IN | G_IO_HUP | G_IO_ERR, chardev_fd_ready, chr);
        event(opaque, CHR_EVENT_OPENED);
    }
    return true;
}

bool chardev_write_all(Chardev *chr, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len && chr->fd >= 0) {
        ssize_t n = send(chr->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            struct pollfd pfd = { .fd = chr->fd, .events = POLLOUT };
            poll(&pfd, 1, -1);
            continue;
        }
        if (n <= 0) {
            /* the peer went away; the read watch reports the close */
            return false;
        }
        p += n;
        len -= (size_t)n;
    }
    return len == 0;
}

const char *chardev_get_path(const Chardev *chr)
{
    return chr->path;
}

bool chardev_is_server(const Chardev *chr)
{
    return chr->server;
}

void chardev_set_reconnect_ms(Chardev *chr, unsigned ms)
{
    chr->reconnect_ms = ms;
}

unsigned chardev_get_reconnect_ms(const Chardev *chr)
{
    return chr->reconnect_ms;
}

bool chardev_claim(Chardev *chr)
{
    if (chr->has_frontend) {
        return false;
    }
    chr->has_frontend = true;   /* with no read/event hooks: nothing is read on its behalf */
    return true;
}

int chardev_take_fd(Chardev *chr)
{
    int fd = chr->fd;

    chr->fd = -1;
    return fd;
}

void chardev_release(Chardev *chr)
{
    chr->has_frontend = false;
}

void chardev_cleanup_all(void)
{
    guint i;

    for (i = 0; chardevs && i < chardevs->len; i++) {
        Chardev *chr = g_ptr_array_index(chardevs, i);

        if (chr->fd_watch) {
            g_source_remove(chr->fd_watch);
        }
        if (chr->listen_watch) {
            g_source_remove(chr->listen_watch);
        }
        if (chr->fd >= 0) {
            close(chr->fd);
        }
        if (chr->listen_fd >= 0) {
            close(chr->listen_fd);
            unlink(chr->path);
        }
        g_free(chr->id);
        g_free(chr->path);
        g_free(chr);
    }
    if (chardevs) {
        g_ptr_array_free(chardevs, TRUE);
        chardevs = NULL;
    }
}

bool chardev_take_vhost_user(const char *type, const char *chr_id, int *fd, const char **path,
                             unsigned *reconnect_ms, char **errp)
{
    Chardev *chr;

    if (!chr_id) {
        *errp = g_strdup("chardev is mandatory");
        return false;
    }
    chr = chardev_find(chr_id);
    if (!chr) {
        *errp = g_strdup_printf("Property '%s.chardev' can't find value '%s'", type, chr_id);
        return false;
    }
    if (chardev_is_server(chr)) {
        *errp = g_strdup_printf("vdm: %s needs a client chardev ('%s' is server=on)", type, chr_id);
        return false;
    }
    if (!chardev_claim(chr)) {
        *errp = g_strdup_printf("Property '%s.chardev' can't take value '%s', it's in use", type, chr_id);
        return false;
    }
    *fd = chardev_take_fd(chr);
    *path = chardev_get_path(chr);
    *reconnect_ms = chardev_get_reconnect_ms(chr);
    return true;
}

void chardev_release_vhost_user(const char *chr_id)
{
    Chardev *chr = chr_id ? chardev_find(chr_id) : NULL;

    if (chr) {
        chardev_release(chr);
    }
}
