/* Filling a table of function pointers from a shared library opened with
 * dlopen, once: the common part of the shims that load a library on first
 * use (systemd_shim, mhd_shim), so a process that never needs the library
 * does not map it nor the libraries it links. */
#ifndef MCP_DL_SHIM_H
#define MCP_DL_SHIM_H

#include <stddef.h>

typedef struct mcp_dl_symbol {
    const char *name;
    size_t offset; /* of its function pointer in the table */
} mcp_dl_symbol;

typedef struct mcp_dl_lib {
    const char *soname; /* "libsystemd.so.0" */
    int state;          /* 0 not tried, 1 loaded, -1 failed */
    char why[256];      /* the first failure */
} mcp_dl_lib;

/* Opens lib->soname and fills table (n symbols) the first time; later calls
 * return the first outcome. The table is written only when every symbol was
 * found. 0, or -1 with a reason in why ("libsystemd.so.0: cannot open shared
 * object file: No such file or directory"). */
int mcp_dl_load(mcp_dl_lib *lib, const mcp_dl_symbol *syms, size_t n, void *table,
                size_t table_size, char *why, size_t len);

#endif
