/* A TOML 1.0 parser producing a tree that remembers where each key and value stood. */
#ifndef MCP_TOML_H
#define MCP_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mcp/error.h"

typedef enum mcp_toml_type {
    MCP_TOML_TABLE,
    MCP_TOML_ARRAY,
    MCP_TOML_STRING,
    MCP_TOML_INTEGER,
    MCP_TOML_FLOAT,
    MCP_TOML_BOOL,
    MCP_TOML_DATETIME,       /* offset date-time, e.g. 1979-05-27T07:32:00Z */
    MCP_TOML_DATETIME_LOCAL, /* 1979-05-27T07:32:00 */
    MCP_TOML_DATE_LOCAL,     /* 1979-05-27 */
    MCP_TOML_TIME_LOCAL,     /* 07:32:00 */
} mcp_toml_type;

typedef struct mcp_toml_value mcp_toml_value;

/* One key of a table, in the order it was defined. */
typedef struct mcp_toml_kv {
    char *key;             /* NUL-terminated; see key_len for keys holding NUL */
    size_t key_len;
    mcp_toml_value *value;
    int line, col;         /* where the key was written (1-based) */
} mcp_toml_kv;

struct mcp_toml_value {
    mcp_toml_type type;
    int line, col; /* where the value (or the table header) starts, 1-based */
    union {
        /* STRING: decoded bytes, NUL-terminated, may contain NUL (use len).
         * The four date/time types: the value's text as written, with a
         * lowercase 't'/'z' or a space separator normalised to 'T'/'Z'. */
        struct {
            char *ptr;
            size_t len;
        } str;
        int64_t integer;
        double floating;
        bool boolean;
        struct {
            mcp_toml_value **items;
            size_t len;
        } array;
        struct {
            mcp_toml_kv *items;
            size_t len;
        } table;
    } u;
};

/* Parses a whole document (text need not be NUL-terminated). Returns the root
 * table, or NULL with err set to "LINE:COL: what is wrong" (callers put the
 * file name in front with mcp_error_prefix). Never crashes on any input;
 * nesting deeper than 128 levels is an error. */
mcp_toml_value *mcp_toml_parse(const char *text, size_t len, mcp_error *err);
void mcp_toml_free(mcp_toml_value *v);

/* The entry of key in a table, or NULL (also when v is not a table). */
const mcp_toml_kv *mcp_toml_find(const mcp_toml_value *table, const char *key);
/* "table", "array", "string", "integer", "float", "bool", "datetime", … */
const char *mcp_toml_type_name(mcp_toml_type t);

#endif
