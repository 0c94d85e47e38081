/* Structured logging to stderr: logfmt (`time=… level=INFO msg="…" k=v`) or one JSON object a line. */
#ifndef MCP_LOG_H
#define MCP_LOG_H

#include <stdbool.h>

typedef enum mcp_log_level {
    MCP_LOG_DEBUG = 0,
    MCP_LOG_INFO = 1,
    MCP_LOG_WARN = 2,
    MCP_LOG_ERROR = 3,
} mcp_log_level;

/* Parses "debug|info|warn|error"; returns -1 for anything else. */
int mcp_log_level_parse(const char *s);
void mcp_log_set_level(mcp_log_level level);
/* json=true: one JSON object per line; false: logfmt. */
void mcp_log_set_json(bool json);
bool mcp_log_enabled(mcp_log_level level);

/* Logs msg with key/value string pairs, terminated by NULL:
 *   mcp_log(MCP_LOG_WARN, "unknown key", "file", path, "line", "12", NULL); */
void mcp_log(mcp_log_level level, const char *msg, ...) __attribute__((sentinel));
/* Same with parallel arrays of n keys and values (used by the Lua binding). */
void mcp_logv(mcp_log_level level, const char *msg, const char *const *keys,
              const char *const *vals, int n);

#define mcp_debug(...) mcp_log(MCP_LOG_DEBUG, __VA_ARGS__, NULL)
#define mcp_info(...) mcp_log(MCP_LOG_INFO, __VA_ARGS__, NULL)
#define mcp_warn(...) mcp_log(MCP_LOG_WARN, __VA_ARGS__, NULL)
#define mcp_errorlog(...) mcp_log(MCP_LOG_ERROR, __VA_ARGS__, NULL)

#endif
