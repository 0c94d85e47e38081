/* Filling a table of function pointers from a shared library opened with
 * dlopen, once: the common part of the shims that load a library on first
 * use (systemd_shim, mhd_shim, curl_shim), so a process that never needs
 * the library does not map it nor the libraries it links. */
#ifndef MCP_DL_SHIM_H
#define MCP_DL_SHIM_H

#include <stddef.h>

typedef struct mcp_dl_lib {
    const char *soname; /* "libsystemd.so.0" */
    int state;          /* 0 not tried, 1 loaded, -1 failed */
    char why[256];      /* the first failure */
} mcp_dl_lib;

/* Opens lib->soname and fills table, a struct of n function pointers, with
 * the symbols named by names (in the order of its members) the first time;
 * later calls return the first outcome. The table is written only when every
 * symbol was found. 0, or -1 with a reason in why ("libsystemd.so.0: cannot
 * open shared object file: No such file or directory"). */
int mcp_dl_load(mcp_dl_lib *lib, const char *const names[], size_t n, void *table,
                size_t table_size, char *why, size_t len);

/* Defines int fn(char *why, size_t len), which loads table (a struct of
 * function pointers, one per name, in that order) from so_name: all a shim
 * says is its library and its symbols. */
#define MCP_DL_SHIM(fn, so_name, table, ...)                                                       \
    int fn(char *why, size_t len)                                                                  \
    {                                                                                              \
        static mcp_dl_lib lib = {.soname = (so_name)};                                             \
        static const char *const names[] = {__VA_ARGS__};                                          \
        enum { n_names = sizeof names / sizeof names[0] };                                         \
        _Static_assert(sizeof(table) == n_names * sizeof(void (*)(void)),                          \
                       "one name per function pointer of " #table);                                \
        return mcp_dl_load(&lib, names, n_names, &(table), sizeof(table), why, len);               \
    }

#endif
