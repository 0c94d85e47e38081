/* libFuzzer: the TOML parser on any bytes. It must return a tree or an error, never crash. */
#include <stddef.h>
#include <stdint.h>

#include "mcp/toml.h"

/* Walks the tree so every node the parser built is read once. */
static size_t walk(const mcp_toml_value *v)
{
    size_t n = 1;
    if (v->type == MCP_TOML_TABLE) {
        for (size_t i = 0; i < v->u.table.len; i++)
            n += walk(v->u.table.items[i].value);
    } else if (v->type == MCP_TOML_ARRAY) {
        for (size_t i = 0; i < v->u.array.len; i++)
            n += walk(v->u.array.items[i]);
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mcp_error err = {{0}};
    mcp_toml_value *root = mcp_toml_parse((const char *)data, size, &err);
    if (root) {
        (void)walk(root);
        (void)mcp_toml_find(root, "name");
        mcp_toml_free(root);
    } else if (!err.msg[0]) {
        __builtin_trap(); /* a failure must say why */
    }
    return 0;
}
