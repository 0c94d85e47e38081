/* Listeners of the gRPC server: a unix socket (mode 0660, stale files
 * cleared) and TCP, with TLS unless plaintext was asked for on loopback. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "grpc_server_impl.h"
#include "mcp/util.h"

static listener *listener_new(mcp_grpc_server *s)
{
    listener *l = calloc(1, sizeof *l);
    if (l) {
        l->server = s;
        l->id = ++s->next_listener_id;
    }
    return l;
}

void mcp_grpcs_listener_closed_cb(uv_handle_t *h)
{
    listener *l = h->data;
    mcp_grpc_server *s = l->server;
    if (l->unix_path)
        unlink(l->unix_path);
    free(l->unix_path);
    mcp_tls_ctx_free(l->tls);
    free(l);
    s->open_handles--;
    mcp_grpcs_check_done(s);
}

/* Returns 0 when path is free for a socket (removing a stale one), -1 otherwise. */
/* Listens on the handle a bind answered rc for; when either failed, closes it
 * and says why, naming "KIND NAME". */
static int listen_or_close(uv_stream_t *h, int rc, const char *kind, const char *name,
                           mcp_error *err)
{
    if (rc == 0)
        rc = uv_listen(h, 128, mcp_grpcs_on_connection);
    if (rc == 0)
        return 0;
    mcp_error_set(err, "grpc: cannot listen on %s%s: %s", kind, name, uv_strerror(rc));
    uv_close((uv_handle_t *)h, mcp_grpcs_listener_closed_cb);
    return -1;
}

static int clear_socket_path(const char *path, mcp_error *err)
{
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT)
            return 0;
        mcp_error_set(err, "grpc: cannot stat socket path %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        mcp_error_set(err, "grpc: %s exists and is not a socket; refusing to remove it", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        mcp_error_set(err, "grpc: socket: %s", strerror(errno));
        return -1;
    }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    close(fd);
    if (rc == 0) {
        mcp_error_set(err, "grpc: another server is listening on %s", path);
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        mcp_error_set(err, "grpc: cannot remove stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Creates the socket's directory (0750) when it is missing, so the error is
 * never a "permission denied" for a path that does not exist. */
static int ensure_socket_dir(const char *path, mcp_error *err)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0; /* the current directory or / */
    *slash = '\0';
    struct stat st;
    if (stat(dir, &st) == 0)
        return 0; /* not a directory, no access: bind says so */
    if (errno == ENOENT && mkdir(dir, 0750) == 0)
        return 0;
    mcp_error_set(err,
                  "grpc: the directory %s for unix socket %s is missing and cannot be created: %s",
                  dir, path, strerror(errno));
    return -1;
}

int mcp_grpc_server_listen_unix(mcp_grpc_server *s, const char *path, mcp_error *err)
{
    struct sockaddr_un sa;
    if (!path || !*path || strlen(path) >= sizeof sa.sun_path) {
        mcp_error_set(err, "grpc: unix socket path is empty or longer than %zu bytes: %s",
                      sizeof sa.sun_path - 1, path ? path : "(null)");
        return -1;
    }
    if (s->shutting_down) {
        mcp_error_set(err, "grpc: server is shutting down");
        return -1;
    }
    if (ensure_socket_dir(path, err) != 0 || clear_socket_path(path, err) != 0)
        return -1;
    listener *l = listener_new(s);
    if (!l || !(l->unix_path = mcp_strdup(path))) {
        free(l);
        mcp_error_set(err, "grpc: out of memory");
        return -1;
    }
    l->is_unix = true;
    uv_pipe_init(s->loop, &l->h.pipe, 0);
    l->h.pipe.data = l;
    s->open_handles++;
    int rc = uv_pipe_bind(&l->h.pipe, path);
    if (rc != 0) {
        /* nothing created: the close callback must not remove whatever is at path */
        free(l->unix_path);
        l->unix_path = NULL;
    }
    if (rc == 0 && chmod(path, 0660) != 0)
        rc = uv_translate_sys_error(errno);
    if (listen_or_close((uv_stream_t *)&l->h.pipe, rc, "unix socket ", path, err) != 0)
        return -1;
    l->next = s->listeners;
    s->listeners = l;
    return 0;
}

/* Splits "host:port" / "[v6]:port" / ":port". */
static int parse_hostport(const char *addr, char *host, size_t hostlen, int *port, mcp_error *err)
{
    const char *colon;
    if (addr[0] == '[') {
        const char *end = strchr(addr, ']');
        if (!end || end[1] != ':' || (size_t)(end - addr - 1) >= hostlen)
            goto bad;
        memcpy(host, addr + 1, (size_t)(end - addr - 1));
        host[end - addr - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || (size_t)(colon - addr) >= hostlen)
            goto bad;
        memcpy(host, addr, (size_t)(colon - addr));
        host[colon - addr] = '\0';
        if (strchr(host, ':'))
            goto bad; /* a bare IPv6 address needs brackets */
    }
    char *end;
    errno = 0;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || p < 0 || p > 65535)
        goto bad;
    *port = (int)p;
    return 0;
bad:
    mcp_error_set(err, "grpc: bad listen address \"%s\": want host:port, [ipv6]:port or :port",
                  addr);
    return -1;
}

int mcp_grpc_server_listen_tcp(mcp_grpc_server *s, const char *addr,
                               const mcp_grpc_tls_options *tls, mcp_error *err)
{
    static const mcp_grpc_tls_options none = {0};
    char host[256];
    int port;
    if (!tls)
        tls = &none;
    if (!addr || parse_hostport(addr, host, sizeof host, &port, err) != 0) {
        if (!addr)
            mcp_error_set(err, "grpc: no listen address");
        return -1;
    }
    if (s->shutting_down) {
        mcp_error_set(err, "grpc: server is shutting down");
        return -1;
    }
    if (tls->insecure && !mcp_grpc_host_is_loopback(host)) {
        mcp_error_set(err,
                      "grpc: plaintext (insecure) gRPC on %s refused: it is allowed only on a "
                      "loopback address (127.0.0.0/8, ::1, localhost); configure TLS instead",
                      addr);
        return -1;
    }
    const char *numeric = host[0] ? host : "0.0.0.0";
    if (strcmp(numeric, "localhost") == 0)
        numeric = "127.0.0.1";
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
        struct sockaddr_storage ss;
    } sa;
    if (uv_ip4_addr(numeric, port, &sa.in4) != 0 && uv_ip6_addr(numeric, port, &sa.in6) != 0) {
        mcp_error_set(err,
                      "grpc: listen address \"%s\": host must be a numeric IP address or "
                      "localhost",
                      addr);
        return -1;
    }
    mcp_tls_ctx *ctx = NULL;
    if (!tls->insecure &&
        !(ctx = mcp_tls_ctx_new(tls->cert_file, tls->key_file, tls->ca_file, err)))
        return -1;
    listener *l = listener_new(s);
    if (!l) {
        mcp_tls_ctx_free(ctx);
        mcp_error_set(err, "grpc: out of memory");
        return -1;
    }
    l->tls = ctx;
    uv_tcp_init(s->loop, &l->h.tcp);
    l->h.tcp.data = l;
    s->open_handles++;
    int rc = uv_tcp_bind(&l->h.tcp, &sa.sa, 0);
    if (listen_or_close((uv_stream_t *)&l->h.tcp, rc, "", addr, err) != 0)
        return -1;
    int len = sizeof sa;
    if (uv_tcp_getsockname(&l->h.tcp, &sa.sa, &len) == 0)
        s->tcp_port = ntohs(sa.sa.sa_family == AF_INET6 ? sa.in6.sin6_port : sa.in4.sin_port);
    l->next = s->listeners;
    s->listeners = l;
    return 0;
}

int mcp_grpc_server_tcp_port(const mcp_grpc_server *s)
{
    return s->tcp_port;
}
