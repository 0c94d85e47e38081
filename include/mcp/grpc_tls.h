/* The server's TLS transport: OpenSSL over memory BIOs, so the caller moves
 * the bytes (libuv) and this module only turns ciphertext into plaintext and
 * back. TLS 1.2+, ALPN h2 only, client certificates required and verified
 * against a CA. Knows nothing of HTTP/2: grpc_conn.c feeds the plaintext to
 * nghttp2. */
#ifndef MCP_GRPC_TLS_H
#define MCP_GRPC_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcp/error.h"

typedef struct mcp_tls_ctx mcp_tls_ctx; /* one per listener */
typedef struct mcp_tls mcp_tls;         /* one per connection */

/* A server context from PEM files, all three required. NULL with err set
 * (naming the file) on failure. */
mcp_tls_ctx *mcp_tls_ctx_new(const char *cert_file, const char *key_file, const char *ca_file,
                             mcp_error *err);
void mcp_tls_ctx_free(mcp_tls_ctx *ctx);

/* A connection in the accepting state; NULL when out of memory. */
mcp_tls *mcp_tls_new(mcp_tls_ctx *ctx);
void mcp_tls_free(mcp_tls *t);

typedef enum {
    MCP_TLS_AGAIN = 0, /* needs more bytes from the peer */
    MCP_TLS_READY = 1, /* handshake done: h2 negotiated, client certificate verified */
    MCP_TLS_FAILED = -1,
} mcp_tls_state;

/* Hands ciphertext from the peer to TLS and advances the handshake. Once it
 * is done (READY) read the plaintext with mcp_tls_read. On FAILED, why says
 * what went wrong; the pending output (an alert) is still worth sending. */
mcp_tls_state mcp_tls_recv(mcp_tls *t, const uint8_t *data, size_t len, char *why, size_t whylen);

/* True once the handshake has completed. */
bool mcp_tls_ready(const mcp_tls *t);

/* Plaintext that arrived: > 0 bytes into buf, 0 when nothing more for now,
 * -1 when the peer closed TLS or it failed. */
int mcp_tls_read(mcp_tls *t, uint8_t *buf, size_t size);

/* Encrypts plaintext for the peer. 0, or -1 on failure. */
int mcp_tls_write(mcp_tls *t, const uint8_t *data, size_t len);

/* Moves up to size bytes of ciphertext due to the peer into buf; returns
 * the count (0: nothing pending). Call until it returns 0. */
size_t mcp_tls_take_output(mcp_tls *t, uint8_t *buf, size_t size);

/* Queues close_notify when the handshake had completed. */
void mcp_tls_close_notify(mcp_tls *t);

/* The client certificate's subject CN into buf; false when there is none. */
bool mcp_tls_peer_cn(const mcp_tls *t, char *buf, size_t size);

#endif
