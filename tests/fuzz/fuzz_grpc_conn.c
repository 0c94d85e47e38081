/* libFuzzer: bytes into one connection of the gRPC server (preface,
 * frames, HPACK, gRPC messages), plaintext over its unix socket listener,
 * with the server on a libuv loop of this process. Each input is one
 * connection: written, the answers read until the server goes quiet, then
 * the client half-closes and waits for the server to close its end. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "mcp/grpc_server.h"
#include "mcp/log.h"

#define MAX_TURNS 2000 /* loop turns per input: bounds one execution */
#define QUIET_TURNS 4  /* turns without an answer byte before the half-close */

static uv_loop_t loop;
static mcp_grpc_server *server;
static char sock_path[108];
static mcp_grpc_server_call *held; /* a call answered only after its connection is gone */

static void remove_socket(void)
{
    unlink(sock_path);
}

static void echo(mcp_grpc_server_call *call, const uint8_t *req, size_t len, void *ud)
{
    (void)mcp_grpc_server_reply(call, req, len);
}

static void fail(mcp_grpc_server_call *call, const uint8_t *req, size_t len, void *ud)
{
    (void)mcp_grpc_server_fail(call, MCP_GRPC_INVALID_ARGUMENT, "fuzz: refused\n\xff");
}

static void stream(mcp_grpc_server_call *call, const uint8_t *req, size_t len, void *ud)
{
    mcp_grpc_server_call_set_streaming(call);
    (void)mcp_grpc_server_send(call, req, len);
    (void)mcp_grpc_server_send(call, req, len / 2);
    (void)mcp_grpc_server_finish(call);
}

static void hold(mcp_grpc_server_call *call, const uint8_t *req, size_t len, void *ud)
{
    if (held)
        (void)mcp_grpc_server_fail(held, MCP_GRPC_ABORTED, "replaced");
    held = call;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    mcp_log_set_level(MCP_LOG_ERROR);
    mcp_error err = {{0}};
    snprintf(sock_path, sizeof sock_path, "/tmp/mcp-fuzz-grpc-%ld.sock", (long)getpid());
    mcp_grpc_server_options opts = {.max_message_bytes = 65536};
    if (uv_loop_init(&loop) != 0 || !(server = mcp_grpc_server_new(&loop, &opts, &err)) ||
        mcp_grpc_server_handle(server, "/mcp.agent.v1.AgentService/ListServices", echo, NULL,
                               &err) != 0 ||
        mcp_grpc_server_handle(server, "/fuzz.F/Fail", fail, NULL, &err) != 0 ||
        mcp_grpc_server_handle(server, "/fuzz.F/Stream", stream, NULL, &err) != 0 ||
        mcp_grpc_server_handle(server, "/fuzz.F/Hold", hold, NULL, &err) != 0 ||
        mcp_grpc_server_listen_unix(server, sock_path, &err) != 0) {
        fprintf(stderr, "fuzz_grpc_conn: %s\n", err.msg);
        abort();
    }
    atexit(remove_socket);
    return 0;
}

static int dial(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        abort();
    return fd;
}

/* Reads what is there without blocking: bytes read, 0 at EOF, -1 when none. */
static ssize_t drain(int fd)
{
    char buf[65536];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return -1;
    if (n < 0) /* reset by the server: as good as EOF */
        return 0;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = dial();
    size_t off = 0;
    int quiet = 0;
    bool half_closed = false, eof = false;
    for (int turn = 0; turn < MAX_TURNS && !eof; turn++) {
        if (off < size) {
            ssize_t w = send(fd, data + off, size - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
                off = size; /* the server closed first */
        }
        uv_run(&loop, UV_RUN_NOWAIT);
        ssize_t r = drain(fd);
        if (r == 0) {
            eof = true;
        } else if (r > 0) {
            quiet = 0;
        } else if (off == size && !half_closed && ++quiet >= QUIET_TURNS) {
            shutdown(fd, SHUT_WR);
            half_closed = true;
        } else {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            (void)poll(&p, 1, 1);
        }
    }
    close(fd);
    for (int turn = 0; turn < MAX_TURNS && mcp_grpc_server_connections(server) > 0; turn++)
        uv_run(&loop, UV_RUN_NOWAIT);
    if (held) {
        (void)mcp_grpc_server_reply(held, NULL, 0); /* orphaned by now: only freed */
        held = NULL;
    }
    return 0;
}
