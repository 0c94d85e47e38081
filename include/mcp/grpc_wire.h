/* gRPC on the wire, shared by the client and the server: status codes,
 * message framing, grpc-timeout values and grpc-message percent-encoding
 * (doc/PROTOCOL-HTTP2.md and doc/statuscodes.md in grpc/grpc). Pure
 * functions: no I/O, no HTTP/2 library. */
#ifndef MCP_GRPC_WIRE_H
#define MCP_GRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcp/error.h"

/* The one list of status codes: the enum, mcp_grpc_status_name() and the
 * Lua table core.api.codes are all generated from it. */
#define MCP_GRPC_STATUS_LIST(X)                                                                    \
    X(OK, 0)                                                                                       \
    X(CANCELLED, 1)                                                                                \
    X(UNKNOWN, 2)                                                                                  \
    X(INVALID_ARGUMENT, 3)                                                                         \
    X(DEADLINE_EXCEEDED, 4)                                                                        \
    X(NOT_FOUND, 5)                                                                                \
    X(ALREADY_EXISTS, 6)                                                                           \
    X(PERMISSION_DENIED, 7)                                                                        \
    X(RESOURCE_EXHAUSTED, 8)                                                                       \
    X(FAILED_PRECONDITION, 9)                                                                      \
    X(ABORTED, 10)                                                                                 \
    X(OUT_OF_RANGE, 11)                                                                            \
    X(UNIMPLEMENTED, 12)                                                                           \
    X(INTERNAL, 13)                                                                                \
    X(UNAVAILABLE, 14)                                                                             \
    X(DATA_LOSS, 15)                                                                               \
    X(UNAUTHENTICATED, 16)

#define MCP_GRPC_STATUS_ENUM_(name, code) MCP_GRPC_##name = code,
enum { MCP_GRPC_STATUS_LIST(MCP_GRPC_STATUS_ENUM_) };
#undef MCP_GRPC_STATUS_ENUM_

/* The highest status code. */
#define MCP_GRPC_STATUS_MAX MCP_GRPC_UNAUTHENTICATED

/* Bytes of the prefix before every message: flag + 4-byte big-endian length. */
#define MCP_GRPC_PREFIX_LEN 5

/* Message cap when the caller sets none. */
#define MCP_GRPC_DEFAULT_MAX_MSG ((size_t)4 << 20)

/* A name for a status code ("DEADLINE_EXCEEDED"), "UNKNOWN" for others. */
const char *mcp_grpc_status_name(int status);

/* Writes the prefix of an uncompressed message of msg_len bytes (<= UINT32_MAX). */
void mcp_grpc_put_prefix(uint8_t prefix[MCP_GRPC_PREFIX_LEN], size_t msg_len);

/* Frames msg (flag 0 + 4-byte big-endian length) into a new buffer of
 * msg_len + 5 bytes. NULL when out of memory or longer than UINT32_MAX. */
uint8_t *mcp_grpc_frame(const void *msg, size_t msg_len);

/* Unframes exactly one uncompressed message from body. Returns 0 and points
 * *msg into body, or -1 with err set (truncated, trailing bytes, compressed,
 * longer than max_msg — checked on the length prefix before anything else). */
int mcp_grpc_unframe(const uint8_t *body, size_t body_len, size_t max_msg, const uint8_t **msg,
                     size_t *msg_len, mcp_error *err);

/* Parses a grpc-timeout value ("100m", "5S", 1-8 digits + H M S m u n) into
 * milliseconds (rounded up). 0, or -1 when malformed (*ms untouched). */
int mcp_grpc_parse_timeout(const char *value, int64_t *ms);

/* Formats a deadline as a grpc-timeout value ("500m", "30S", ...) into buf. */
void mcp_grpc_timeout_header(int64_t timeout_ms, char *buf, size_t size);

/* Percent-encodes a grpc-message (bytes outside 0x20-0x7E and '%'). Fresh
 * string, NULL when out of memory. NULL msg encodes as "". */
char *mcp_grpc_percent_encode(const char *msg);

/* Percent-decodes a grpc-message into a new string (invalid escapes are
 * kept as they are). NULL when out of memory. */
char *mcp_grpc_percent_decode(const char *s);

/* True when host is a loopback address literal or "localhost". */
bool mcp_grpc_host_is_loopback(const char *host);

#endif
