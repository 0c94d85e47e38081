/* Errors carried back to the caller as text that names the file, line and key. */
#ifndef MCP_ERROR_H
#define MCP_ERROR_H

typedef struct mcp_error {
    char msg[1024];
} mcp_error;

/* Formats into err->msg (err may be NULL: then nothing happens). */
void mcp_error_set(mcp_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Puts "prefix: " in front of the current message, e.g. a file name. */
void mcp_error_prefix(mcp_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
