/* Small allocation and string helpers shared by every module. */
#ifndef MCP_UTIL_H
#define MCP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable vector of owned, NUL-terminated strings. Zero-initialise to use. */
typedef struct mcp_strv {
    char **v;
    size_t n;
} mcp_strv;

/* Appends a copy of s. Returns 0, or -1 when out of memory. */
int mcp_strv_push(mcp_strv *sv, const char *s);
/* Appends a copy of the len bytes at s. */
int mcp_strv_push_n(mcp_strv *sv, const char *s, size_t len);
/* Appends the n bytes at data to the NUL-terminated string *s (*len bytes
 * used of *cap), growing it by doubling from first_cap (> 0) to at most
 * max_cap bytes (0: no cap; the caller keeps len + n below it). Returns 0,
 * or -1 when out of memory (*s then as it was). */
int mcp_bytes_append(char **s, size_t *len, size_t *cap, const char *data, size_t n,
                     size_t first_cap, size_t max_cap);
/* items (n of size bytes each, or NULL) with room for one more, zeroed; NULL
 * when out of memory, items then left as they were. The room is implied by n
 * (it doubles, as mcp_strv's), so the array must only ever grow through this,
 * from NULL. */
void *mcp_grow_one(void *items, size_t n, size_t size);
/* items (*cap bytes, from malloc, or NULL) grown by doubling from first_cap
 * (> 0) until it holds need bytes, to at most max_cap (0: no cap); *cap is
 * updated. NULL when out of memory, items then left as they were. Call it
 * when need > *cap. */
void *mcp_grow_to(void *items, size_t *cap, size_t need, size_t first_cap, size_t max_cap);
/* Frees each of the n pointers (NULL is fine). */
void mcp_free_each(void *const ptrs[], size_t n);
/* Frees each of the n strvs. */
void mcp_strv_free_each(mcp_strv *const svs[], size_t n);
/* free() of every argument, for the free functions of structs with many
 * owned strings: MCP_FREE_ALL(c->id, c->name, c->image). */
#define MCP_FREE_ALL(...)                                                                          \
    mcp_free_each((void *const[]){__VA_ARGS__},                                                    \
                  sizeof((void *const[]){__VA_ARGS__}) / sizeof(void *))
/* mcp_strv_free of every argument: MCP_STRV_FREE_ALL(&c->env, &c->cmd). */
#define MCP_STRV_FREE_ALL(...)                                                                     \
    mcp_strv_free_each((mcp_strv *const[]){__VA_ARGS__},                                           \
                       sizeof((mcp_strv *const[]){__VA_ARGS__}) / sizeof(mcp_strv *))
/* The decimal number spelled by exactly the n bytes at s: 1 to max_digits
 * (<= 18) digits, no sign or spaces; -1 when they are not one. */
long mcp_parse_digits(const char *s, size_t n, size_t max_digits);
/* Takes node out of the doubly linked list (members prev and next) whose
 * first node is head, an lvalue; a node with no prev that is not head is in
 * no list, and head is left alone. */
#define MCP_LIST_UNLINK(head, node)                                                                \
    do {                                                                                           \
        if ((node)->prev)                                                                          \
            (node)->prev->next = (node)->next;                                                     \
        else if ((head) == (node))                                                                 \
            (head) = (node)->next;                                                                 \
        if ((node)->next)                                                                          \
            (node)->next->prev = (node)->prev;                                                     \
    } while (0)
/* Appends node to the singly linked queue head..tail (lvalues), linked through
 * its member next. */
#define MCP_QUEUE_APPEND(head, tail, node, next)                                                   \
    do {                                                                                           \
        (node)->next = NULL;                                                                       \
        if (tail)                                                                                  \
            (tail)->next = (node);                                                                 \
        else                                                                                       \
            (head) = (node);                                                                       \
        (tail) = (node);                                                                           \
    } while (0)
/* Frees the n items of the array items (NULL is fine) with free_one, which
 * takes a pointer to one, then the array: the body of every mcp_*s_free. */
#define MCP_FREE_ARRAY(items, n, free_one)                                                         \
    do {                                                                                           \
        for (size_t i_ = 0; (items) && i_ < (n); i_++)                                             \
            free_one(&(items)[i_]);                                                                \
        free(items);                                                                               \
    } while (0)
/* Appends every string of src. Returns 0 or -1. */
int mcp_strv_extend(mcp_strv *dst, const mcp_strv *src);
/* Frees every string and the vector, leaving it empty and reusable. */
void mcp_strv_free(mcp_strv *sv);
/* A NULL-terminated copy of the pointers, for execvp-style APIs (strings are shared, not copied).
 * Free the returned array with free(). NULL when out of memory. */
char **mcp_strv_argv(const mcp_strv *sv);

/* strdup that accepts NULL (returns NULL). */
char *mcp_strdup(const char *s);
/* Duplicates the first n bytes and NUL-terminates. */
char *mcp_strndup(const char *s, size_t n);
/* asprintf into a fresh string; NULL when out of memory. */
char *mcp_sprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reads a whole file into a NUL-terminated buffer. Returns NULL and sets errno on failure. */
char *mcp_read_file(const char *path, size_t *len);

/* Monotonic clock in milliseconds / seconds. */
int64_t mcp_now_ms(void);
double mcp_now_s(void);

#endif
