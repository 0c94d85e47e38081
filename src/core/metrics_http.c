/* GET /metrics served by libmicrohttpd on the libuv loop. MHD runs without
 * a thread (MHD_USE_EPOLL, external polling): a uv_poll watches its epoll
 * descriptor and a uv_timer its timeouts, and both call MHD_run on the loop
 * thread. HTTP parsing, keep-alive and the request-size bound are MHD's;
 * what MHD lacks — a deadline for a whole request (a client sending a byte
 * a second never looks idle) and cutting idle connections when there are
 * many — is done here by shutting down the socket, which MHD then closes.
 * libmicrohttpd itself is loaded when the first endpoint starts
 * (mhd_shim.h): a process that serves no metrics never maps it. */
#include "mcp/metrics_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mcp/util.h"

#include "mhd_shim.h" /* MHD, loaded on first use */

#define SWEEP_MS 500

/* One TCP (or unix) connection, tracked for the deadlines. */
typedef struct conn {
    struct conn *prev, *next;
    int fd;
    uint64_t since_ns; /* connected, or its last answer went out */
    bool answering;    /* a request is being answered: never cut */
    bool cut;
} conn;

struct mcp_metrics_http {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    mcp_metrics *metrics;
    uv_poll_t poll;
    uv_timer_t timer;
    int open_handles;
    int port;
    char *unix_path; /* removed at close */
    conn *conns;     /* newest first */
    size_t n_conns;
};

/* ---------- the listen address ---------- */

static int parse_port(const char *s, int *port)
{
    if (!*s || strlen(s) > 5)
        return -1;
    int v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    if (v > 65535)
        return -1;
    *port = v;
    return 0;
}

int mcp_metrics_listen_parse(const char *text, mcp_metrics_listen *out, char *why, size_t whylen)
{
    memset(out, 0, sizeof *out);
    const char *want = "want host:port, [ipv6]:port, :port or a unix socket path";
    if (!text || !*text) {
        snprintf(why, whylen, "empty listen address (%s)", want);
        return -1;
    }
    if (text[0] == '/' || strncmp(text, "./", 2) == 0 || strncmp(text, "../", 3) == 0) {
        if (strlen(text) >= sizeof out->path) {
            snprintf(why, whylen, "unix socket path is longer than %zu bytes",
                     sizeof out->path - 1);
            return -1;
        }
        out->family = AF_UNIX;
        snprintf(out->path, sizeof out->path, "%s", text);
        return 0;
    }
    const char *port_text;
    size_t host_len;
    const char *host = text;
    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (!end || end[1] != ':')
            goto bad;
        host = text + 1;
        host_len = (size_t)(end - host);
        port_text = end + 2;
        out->family = AF_INET6;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || memchr(text, ':', (size_t)(colon - text)))
            goto bad; /* no port, or a bare IPv6 address */
        host_len = (size_t)(colon - text);
        port_text = colon + 1;
        out->family = AF_INET;
    }
    if (host_len >= sizeof out->host || parse_port(port_text, &out->port) != 0)
        goto bad;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    if (out->family == AF_INET && strcmp(out->host, "localhost") == 0)
        snprintf(out->host, sizeof out->host, "127.0.0.1");
    if (out->family == AF_INET && out->host[0] == '\0')
        snprintf(out->host, sizeof out->host, "0.0.0.0");
    unsigned char addr[sizeof(struct in6_addr)];
    if (inet_pton(out->family, out->host, addr) != 1) {
        snprintf(why, whylen, "\"%s\" is not an IP%s address (%s)", out->host,
                 out->family == AF_INET6 ? "v6" : "v4", want);
        return -1;
    }
    return 0;
bad:
    snprintf(why, whylen, "bad listen address \"%s\" (%s)", text, want);
    return -1;
}

/* A listening socket for a; -1 with err set. */
static int open_listener(const mcp_metrics_listen *a, const char *text, mcp_error *err)
{
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
    } sa;
    socklen_t len;
    memset(&sa, 0, sizeof sa);
    if (a->family == AF_UNIX) {
        sa.un.sun_family = AF_UNIX;
        memcpy(sa.un.sun_path, a->path, strlen(a->path) + 1);
        len = sizeof sa.un;
        struct stat st;
        if (lstat(a->path, &st) == 0 && S_ISSOCK(st.st_mode) && unlink(a->path) != 0) {
            mcp_error_set(err, "metrics: cannot replace the old socket %s: %s", a->path,
                          strerror(errno));
            return -1;
        }
    } else if (a->family == AF_INET6) {
        sa.in6.sin6_family = AF_INET6;
        sa.in6.sin6_port = htons((uint16_t)a->port);
        if (inet_pton(AF_INET6, a->host, &sa.in6.sin6_addr) != 1)
            goto bad;
        len = sizeof sa.in6;
    } else {
        sa.in.sin_family = AF_INET;
        sa.in.sin_port = htons((uint16_t)a->port);
        if (inet_pton(AF_INET, a->host, &sa.in.sin_addr) != 1)
            goto bad;
        len = sizeof sa.in;
    }
    int fd = socket(a->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        mcp_error_set(err, "metrics: cannot listen on %s: %s", text, strerror(errno));
        return -1;
    }
    int one = 1;
    if (a->family != AF_UNIX && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
        goto fail;
    if (a->family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0)
        goto fail;
    if (bind(fd, &sa.sa, len) != 0)
        goto fail;
    if (a->family == AF_UNIX && chmod(a->path, 0660) != 0)
        goto fail;
    if (listen(fd, 64) != 0)
        goto fail;
    return fd;
fail:
    mcp_error_set(err, "metrics: cannot listen on %s: %s", text, strerror(errno));
    close(fd);
    return -1;
bad:
    mcp_error_set(err, "metrics: bad listen address \"%s\"", text);
    return -1;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

/* ---------- MHD callbacks ---------- */

static enum MHD_Result answer_text(struct MHD_Connection *c, unsigned status, const char *text,
                                   const char *allow)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    enum MHD_Result ok = MHD_add_response_header(r, "Content-Type", "text/plain; charset=utf-8");
    if (ok == MHD_YES && allow)
        ok = MHD_add_response_header(r, "Allow", allow);
    if (ok == MHD_YES)
        ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static conn *conn_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    mcp_metrics_http *s = cls;
    if (!*req_cls) { /* headers are in: answer on the next call, after any body */
        conn *k = conn_of(c);
        if (k)
            k->answering = true;
        *req_cls = s;
        return MHD_YES;
    }
    if (*upload_data_size) { /* a body nobody asked for: drop it */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(url, "/metrics") != 0)
        return answer_text(c, MHD_HTTP_NOT_FOUND, "not found: only /metrics is served\n", NULL);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return answer_text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: use GET\n",
                           "GET, HEAD");
    size_t len = 0;
    char *body = mcp_metrics_render(s->metrics, &len);
    if (!body)
        return answer_text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    enum MHD_Result ok =
        MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    if (ok == MHD_YES)
        ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ok;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    conn *k = conn_of(c);
    if (k) {
        k->answering = false;
        k->since_ns = uv_hrtime();
    }
    *req_cls = NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    mcp_metrics_http *s = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        conn *k = calloc(1, sizeof *k);
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (!k || !info) {
            free(k); /* untracked: MHD's idle timeout still applies */
            return;
        }
        k->fd = info->connect_fd;
        k->since_ns = uv_hrtime();
        k->next = s->conns;
        if (s->conns)
            s->conns->prev = k;
        s->conns = k;
        s->n_conns++;
        *socket_context = k;
        return;
    }
    conn *k = *socket_context;
    if (!k)
        return;
    MCP_LIST_UNLINK(s->conns, k);
    s->n_conns--;
    free(k);
    *socket_context = NULL;
}

/* ---------- driving MHD from the loop ---------- */

/* Cuts connections past their request deadline, and the oldest idle ones
 * while there are too many: MHD sees the end of the stream and closes them. */
static void sweep(mcp_metrics_http *s)
{
    uint64_t now = uv_hrtime();
    uint64_t deadline = (uint64_t)MCP_METRICS_REQUEST_DEADLINE_S * 1000000000ULL;
    size_t idle = 0;
    conn *oldest = NULL;
    for (conn *k = s->conns; k; k = k->next) {
        if (k->answering || k->cut)
            continue;
        if (now - k->since_ns > deadline) {
            shutdown(k->fd, SHUT_RDWR);
            k->cut = true;
            continue;
        }
        idle++;
        oldest = k; /* the list is newest first */
    }
    while (idle > MCP_METRICS_IDLE_CONNECTIONS && oldest) {
        conn *prev = oldest->prev;
        if (!oldest->answering && !oldest->cut) {
            shutdown(oldest->fd, SHUT_RDWR);
            oldest->cut = true;
            idle--;
        }
        oldest = prev;
    }
}

static void on_timer(uv_timer_t *t);

static void run_mhd(mcp_metrics_http *s)
{
    /* MHD_NO only says nothing could be done this turn; the next event retries */
    (void)MHD_run(s->mhd);
    sweep(s);
    MHD_UNSIGNED_LONG_LONG ms = 0;
    bool mhd_timeout = MHD_get_timeout(s->mhd, &ms) == MHD_YES;
    if (!mhd_timeout && !s->conns) {
        uv_timer_stop(&s->timer); /* nothing to watch until the next connection */
        return;
    }
    if (!mhd_timeout || ms > SWEEP_MS)
        ms = SWEEP_MS;
    uv_timer_start(&s->timer, on_timer, ms, 0);
}

static void on_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    run_mhd(p->data);
}

static void handle_closed(uv_handle_t *h)
{
    mcp_metrics_http *s = h->data;
    if (--s->open_handles > 0)
        return;
    if (s->mhd)
        MHD_stop_daemon(s->mhd); /* closes the listener and every connection */
    if (s->unix_path)
        unlink(s->unix_path);
    free(s->unix_path);
    free(s);
}

mcp_metrics_http *mcp_metrics_http_start(uv_loop_t *loop, const char *listen, mcp_metrics *m,
                                         mcp_error *err)
{
    mcp_metrics_listen a;
    char why[300];
    if (mcp_metrics_listen_parse(listen, &a, why, sizeof why) != 0) {
        mcp_error_set(err, "metrics: %s", why);
        return NULL;
    }
    if (mcp_mhd_load(why, sizeof why) != 0) {
        mcp_error_set(err, "metrics: cannot load libmicrohttpd: %s", why);
        return NULL;
    }
    int fd = open_listener(&a, listen, err);
    if (fd < 0)
        return NULL;
    mcp_metrics_http *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        mcp_error_set(err, "metrics: out of memory");
        return NULL;
    }
    s->loop = loop;
    s->metrics = m;
    s->port = bound_port(fd);
    if (a.family == AF_UNIX && !(s->unix_path = strdup(a.path))) {
        close(fd);
        free(s);
        mcp_error_set(err, "metrics: out of memory");
        return NULL;
    }
    s->mhd = MHD_start_daemon(
        MHD_USE_EPOLL, 0, NULL, NULL, on_request, s, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)MCP_METRICS_MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)MCP_METRICS_IDLE_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)MCP_METRICS_REQUEST_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection,
        s, MHD_OPTION_END);
    const union MHD_DaemonInfo *info =
        s->mhd ? MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
    int rc = info ? uv_poll_init(loop, &s->poll, info->epoll_fd) : UV_EINVAL;
    if (rc != 0) {
        mcp_error_set(err, "metrics: cannot start the HTTP server on %s%s%s", listen,
                      s->mhd ? ": " : "", s->mhd ? uv_strerror(rc) : "");
        if (s->mhd)
            MHD_stop_daemon(s->mhd);
        else
            close(fd);
        if (s->unix_path)
            unlink(s->unix_path);
        free(s->unix_path);
        free(s);
        return NULL;
    }
    s->poll.data = s;
    s->open_handles++;
    if (uv_timer_init(loop, &s->timer) != 0) {
        mcp_error_set(err, "metrics: cannot start a timer");
        uv_close((uv_handle_t *)&s->poll, handle_closed);
        return NULL;
    }
    s->timer.data = s;
    s->open_handles++;
    rc = uv_poll_start(&s->poll, UV_READABLE, on_poll);
    if (rc != 0) {
        mcp_error_set(err, "metrics: cannot watch the HTTP server: %s", uv_strerror(rc));
        mcp_metrics_http_close(s);
        return NULL;
    }
    return s;
}

int mcp_metrics_http_port(const mcp_metrics_http *s)
{
    return s->port;
}

void mcp_metrics_http_close(mcp_metrics_http *s)
{
    if (!s)
        return;
    uv_poll_stop(&s->poll);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->poll, handle_closed);
    uv_close((uv_handle_t *)&s->timer, handle_closed);
}
