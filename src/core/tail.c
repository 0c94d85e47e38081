/* Following a file's appended lines with inotify (uv_fs_event). The file is
 * read with pread from the last offset whenever it changed: a regular file
 * in the page cache, so the read does not block the loop for long. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcp/lines.h"
#include "mcp/log.h"
#include "mcp/tail.h"
#include "mcp/util.h"

#define TAIL_CHUNK ((size_t)64 << 10)

struct mcp_tail {
    uv_loop_t *loop;
    uv_fs_event_t watch; /* the file, or its directory while the file is gone */
    uv_timer_t reopen;   /* a rename seen: look at the path again, off the inotify callback */
    bool watching, on_dir, closed;
    int open_handles;
    char *path, *dir, *base;
    int fd; /* -1 while the file is gone */
    dev_t dev;
    ino_t ino;
    off_t offset;
    mcp_lines lines;
    mcp_tail_cb on_line;
    void *ud;
    char chunk[TAIL_CHUNK];
};

static bool deliver(const char *line, size_t len, void *ud)
{
    mcp_tail *t = ud;
    t->on_line(line, len, t->ud);
    return t->closed;
}

/* Everything appended since the last read. Returns true when the file has
 * no name left (removed: while we hold it open, inotify says only that its
 * links changed). */
static bool read_new(mcp_tail *t)
{
    struct stat sb;
    if (t->fd < 0 || fstat(t->fd, &sb) != 0)
        return false;
    if (sb.st_size < t->offset) { /* truncated: from its new end */
        t->offset = sb.st_size;
        mcp_lines_reset(&t->lines);
    }
    while (!t->closed) {
        ssize_t n = pread(t->fd, t->chunk, sizeof t->chunk, t->offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        t->offset += n;
        if (!mcp_lines_feed(&t->lines, t->chunk, (size_t)n))
            break;
    }
    return sb.st_nlink == 0;
}

static void on_change(uv_fs_event_t *h, const char *filename, int events, int status);

static int watch(mcp_tail *t, const char *what, bool on_dir)
{
    if (t->watching)
        uv_fs_event_stop(&t->watch);
    t->watching = uv_fs_event_start(&t->watch, on_change, what, 0) == 0;
    t->on_dir = on_dir;
    return t->watching ? 0 : -1;
}

/* Opens the file at path; from_start: a new file, all of it unread. */
static int open_file(mcp_tail *t, bool from_start)
{
    int fd = open(t->path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0)
        return -1;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    bool same = t->fd >= 0 && sb.st_dev == t->dev && sb.st_ino == t->ino;
    if (same) {
        close(fd);
        return 0;
    }
    if (t->fd >= 0)
        close(t->fd);
    t->fd = fd;
    t->dev = sb.st_dev;
    t->ino = sb.st_ino;
    t->offset = from_start ? 0 : sb.st_size;
    mcp_lines_reset(&t->lines);
    return 0;
}

/* After a rename or removal: the file at path again, or its directory until one is there. */
static void on_reopen(uv_timer_t *timer)
{
    mcp_tail *t = timer->data;
    if (t->closed)
        return;
    read_new(t); /* what was written to the old file before it went */
    if (t->closed)
        return;
    if (open_file(t, true) == 0 && watch(t, t->path, false) == 0) {
        read_new(t);
        return;
    }
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
    if (watch(t, t->dir, true) != 0)
        mcp_log(MCP_LOG_DEBUG, "tail: the file and its directory are gone", "path", t->path, NULL);
}

static void on_change(uv_fs_event_t *h, const char *filename, int events, int status)
{
    mcp_tail *t = h->data;
    if (t->closed || status < 0)
        return;
    if (t->on_dir) {
        if (filename && strcmp(filename, t->base) == 0)
            uv_timer_start(&t->reopen, on_reopen, 0, 0);
        return;
    }
    bool unlinked = (events & UV_CHANGE) && read_new(t);
    if (!t->closed && ((events & UV_RENAME) || unlinked))
        uv_timer_start(&t->reopen, on_reopen, 0, 0);
}

static void free_tail(mcp_tail *t)
{
    if (t->fd >= 0)
        close(t->fd);
    mcp_lines_free(&t->lines);
    free(t->path);
    free(t->dir);
    free(t->base);
    free(t);
}

static void on_closed(uv_handle_t *h)
{
    mcp_tail *t = h->data;
    if (--t->open_handles == 0)
        free_tail(t);
}

mcp_tail *mcp_tail_open(uv_loop_t *loop, const char *path, size_t max_line, mcp_tail_cb on_line,
                        void *ud, mcp_error *err)
{
    mcp_tail *t = calloc(1, sizeof *t);
    if (!t || mcp_lines_init(&t->lines, max_line, deliver, t) != 0) {
        free(t);
        mcp_error_set(err, "%s: out of memory", path);
        return NULL;
    }
    t->loop = loop;
    t->fd = -1;
    t->on_line = on_line;
    t->ud = ud;
    const char *slash = strrchr(path, '/');
    t->path = mcp_strdup(path);
    t->dir = slash ? mcp_sprintf("%.*s", (int)(slash == path ? 1 : slash - path), path)
                   : mcp_strdup(".");
    t->base = mcp_strdup(slash ? slash + 1 : path);
    if (!t->path || !t->dir || !t->base) {
        free_tail(t);
        mcp_error_set(err, "%s: out of memory", path);
        return NULL;
    }
    /* not there yet: its directory is watched until it is */
    bool missing = open_file(t, false) != 0;
    if (missing && errno != ENOENT) {
        mcp_error_set(err, "%s: %s", path, strerror(errno));
        free_tail(t);
        return NULL;
    }
    uv_fs_event_init(loop, &t->watch);
    uv_timer_init(loop, &t->reopen);
    t->watch.data = t->reopen.data = t;
    t->open_handles = 2;
    if (watch(t, missing ? t->dir : t->path, missing) != 0) {
        mcp_error_set(err, "%s: cannot watch %s", path, missing ? t->dir : "it");
        mcp_tail_close(t); /* the loop frees it */
        return NULL;
    }
    return t;
}

void mcp_tail_close(mcp_tail *t)
{
    if (!t || t->closed)
        return;
    t->closed = true;
    uv_close((uv_handle_t *)&t->watch, on_closed);
    uv_close((uv_handle_t *)&t->reopen, on_closed);
}
