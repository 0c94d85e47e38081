/* gRPC wire helpers shared by grpc_client.c and the server (grpc_wire.h). */
#include "mcp/grpc_wire.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mcp_grpc_status_name(int status)
{
#define MCP_GRPC_STATUS_NAME_(name, code) [code] = #name,
    static const char *const names[] = {MCP_GRPC_STATUS_LIST(MCP_GRPC_STATUS_NAME_)};
#undef MCP_GRPC_STATUS_NAME_
    if (status < 0 || status >= (int)(sizeof names / sizeof names[0]) || !names[status])
        return "UNKNOWN";
    return names[status];
}

void mcp_grpc_put_prefix(uint8_t prefix[MCP_GRPC_PREFIX_LEN], size_t msg_len)
{
    prefix[0] = 0; /* not compressed */
    prefix[1] = (uint8_t)(msg_len >> 24);
    prefix[2] = (uint8_t)(msg_len >> 16);
    prefix[3] = (uint8_t)(msg_len >> 8);
    prefix[4] = (uint8_t)msg_len;
}

uint8_t *mcp_grpc_frame(const void *msg, size_t msg_len)
{
    if (msg_len > UINT32_MAX)
        return NULL;
    uint8_t *buf = malloc(msg_len + MCP_GRPC_PREFIX_LEN);
    if (!buf)
        return NULL;
    mcp_grpc_put_prefix(buf, msg_len);
    if (msg_len)
        memcpy(buf + MCP_GRPC_PREFIX_LEN, msg, msg_len);
    return buf;
}

int mcp_grpc_unframe(const uint8_t *body, size_t body_len, size_t max_msg, const uint8_t **msg,
                     size_t *msg_len, mcp_error *err)
{
    if (body_len < MCP_GRPC_PREFIX_LEN) {
        mcp_error_set(err, "truncated message: %zu bytes, want at least 5", body_len);
        return -1;
    }
    size_t len = ((size_t)body[1] << 24) | ((size_t)body[2] << 16) | ((size_t)body[3] << 8) |
                 (size_t)body[4];
    if (len > max_msg) {
        mcp_error_set(err, "message of %zu bytes exceeds the %zu byte cap", len, max_msg);
        return -1;
    }
    if (body[0] != 0) {
        mcp_error_set(err, "compressed message (flag %u) not supported", body[0]);
        return -1;
    }
    if (body_len - MCP_GRPC_PREFIX_LEN < len) {
        mcp_error_set(err, "truncated message: %zu of %zu bytes", body_len - MCP_GRPC_PREFIX_LEN,
                      len);
        return -1;
    }
    if (body_len - MCP_GRPC_PREFIX_LEN > len) {
        mcp_error_set(err, "%zu bytes after the message (unary call)",
                      body_len - MCP_GRPC_PREFIX_LEN - len);
        return -1;
    }
    *msg = body + MCP_GRPC_PREFIX_LEN;
    *msg_len = len;
    return 0;
}

int mcp_grpc_parse_timeout(const char *value, int64_t *ms)
{
    if (!value)
        return -1;
    size_t n = strlen(value);
    if (n < 2 || n > 9)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (value[i] < '0' || value[i] > '9')
            return -1;
        v = v * 10 + (value[i] - '0');
    }
    switch (value[n - 1]) {
    case 'H':
        *ms = v * 3600000;
        break;
    case 'M':
        *ms = v * 60000;
        break;
    case 'S':
        *ms = v * 1000;
        break;
    case 'm':
        *ms = v;
        break;
    case 'u':
        *ms = (v + 999) / 1000;
        break;
    case 'n':
        *ms = (v + 999999) / 1000000;
        break;
    default:
        return -1;
    }
    return 0;
}

void mcp_grpc_timeout_header(int64_t timeout_ms, char *buf, size_t size)
{
    if (timeout_ms < 1)
        timeout_ms = 1;
    /* at most 8 digits: switch to seconds, then hours, for long deadlines */
    if (timeout_ms <= 99999999)
        snprintf(buf, size, "%lldm", (long long)timeout_ms);
    else if (timeout_ms / 1000 <= 99999999)
        snprintf(buf, size, "%lldS", (long long)(timeout_ms / 1000));
    else
        snprintf(buf, size, "%lldH", (long long)(timeout_ms / 3600000));
}

char *mcp_grpc_percent_encode(const char *msg)
{
    if (!msg)
        msg = "";
    size_t n = strlen(msg);
    char *out = malloc(n * 3 + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            *o++ = (char)*p;
        } else {
            static const char hex[] = "0123456789ABCDEF";
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

char *mcp_grpc_percent_decode(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && isxdigit((unsigned char)s[i + 1]) &&
            isxdigit((unsigned char)s[i + 2])) {
            char hex[3] = {s[i + 1], s[i + 2], 0};
            *o++ = (char)strtol(hex, NULL, 16);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

bool mcp_grpc_host_is_loopback(const char *host)
{
    if (!host)
        return false;
    if (strcmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    struct in6_addr a6;
    if (inet_pton(AF_INET6, host, &a6) == 1) {
        if (IN6_IS_ADDR_LOOPBACK(&a6))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
    }
    return false;
}
