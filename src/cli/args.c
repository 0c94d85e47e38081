/* Parses a command's arguments by its table entry: flags anywhere before
 * "--" (only before the first argument for eval, whose later arguments are
 * the script's), "--flag VALUE" and "--flag=VALUE" for flags that take one. */
#include "args.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcp/util.h"

typedef struct builder {
    char **flags, **pos;
    int nflags, npos;
    char problem[512]; /* the first problem; reported unless --help was asked */
} builder;

static int push(char ***v, int *n, char *s)
{
    if (!s)
        return -1;
    char **grown = realloc(*v, (size_t)(*n + 1) * sizeof *grown);
    if (!grown) {
        free(s);
        return -1;
    }
    *v = grown;
    (*v)[(*n)++] = s;
    return 0;
}

__attribute__((format(printf, 2, 3))) static void problem(builder *b, const char *fmt, ...)
{
    if (b->problem[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->problem, sizeof b->problem, fmt, ap);
    va_end(ap);
}

/* "--since=5m" / "--since" "5m" -> "--since=5m"; "-e" "CODE" -> "--e=CODE". */
static char *canonical_flag(const flag_spec *f, const char *value)
{
    const char *bare = f->name + (f->name[1] == '-' ? 2 : 1);
    size_t len = strlen(bare) + (value ? strlen(value) + 1 : 0) + 3;
    char *s = malloc(len);
    if (s)
        snprintf(s, len, "--%s%s%s", bare, value ? "=" : "", value ? value : "");
    return s;
}

static void unknown_flag(builder *b, const command *c, const char *given)
{
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(given, "="), given);
    const flag_spec *near = command_nearest_flag(c, name);
    char hint[256];
    if (near) {
        snprintf(hint, sizeof hint, "did you mean '%s'?", near->name);
    } else {
        size_t used = (size_t)snprintf(hint, sizeof hint, "%s takes:", c->name);
        for (size_t i = 0; i < MAX_FLAGS && c->flags[i].name && used < sizeof hint; i++)
            used += (size_t)snprintf(hint + used, sizeof hint - used, " %s", c->flags[i].name);
        if (used < sizeof hint)
            snprintf(hint + used, sizeof hint - used, " --help");
    }
    problem(b, "unknown flag '%s' (%s)", name, hint);
}

static bool is_flag(const char *a)
{
    return a[0] == '-' && a[1] != '\0';
}

/* One flag at argv[*i]; advances *i past a separate value. */
static int take_flag(builder *b, const command *c, int argc, char **argv, int *i, parsed_args *out)
{
    const char *a = argv[*i];
    const char *eq = a[1] == '-' ? strchr(a, '=') : NULL;
    char name[128];
    snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a) : (int)strlen(a), a);
    const flag_spec *f = command_flag(c, name);
    if (!f) {
        unknown_flag(b, c, a);
        return 0;
    }
    if (strcmp(f->name, "--help") == 0) {
        out->help = true;
        return 0;
    }
    const char *value = NULL;
    if (f->value) {
        if (eq) {
            value = eq + 1;
        } else if (*i + 1 < argc) {
            value = argv[++*i];
        } else {
            problem(b, "%s needs %s", f->name, f->value);
            return 0;
        }
    } else if (eq) {
        problem(b, "%s takes no value", f->name);
        return 0;
    }
    if (strcmp(f->name, "--dry-run") == 0)
        out->dry_run = true;
    return push(&b->flags, &b->nflags, canonical_flag(f, value));
}

static void check_counts(builder *b, const command *c)
{
    if (b->npos < c->min_args)
        problem(b, "missing %s", c->args ? c->args : "arguments");
    else if (c->max_args >= 0 && b->npos > c->max_args)
        problem(b, "unexpected argument '%s'", b->pos[c->max_args]);
}

/* Moves the flags and arguments into out; b keeps them on failure. */
static int assemble(builder *b, parsed_args *out)
{
    char **argv = calloc((size_t)(b->nflags + 1 + b->npos) + 1, sizeof *argv);
    char *sep = mcp_strdup("--");
    if (!argv || !sep) {
        free(argv);
        free(sep);
        return -1;
    }
    int k = 0;
    for (int i = 0; i < b->nflags; i++)
        argv[k++] = b->flags[i];
    argv[k++] = sep;
    for (int i = 0; i < b->npos; i++)
        argv[k++] = b->pos[i];
    out->argv = argv;
    out->argc = k;
    b->nflags = b->npos = 0;
    return 0;
}

static void builder_free(builder *b)
{
    for (int i = 0; i < b->nflags; i++)
        free(b->flags[i]);
    for (int i = 0; i < b->npos; i++)
        free(b->pos[i]);
    free(b->flags);
    free(b->pos);
}

int args_parse(const command *c, int argc, char **argv, parsed_args *out)
{
    memset(out, 0, sizeof *out);
    builder b = {0};
    bool flags_done = false;
    int rc = 0;
    for (int i = 0; i < argc && rc == 0; i++) {
        const char *a = argv[i];
        if (!flags_done && strcmp(a, "--") == 0) {
            flags_done = true;
        } else if (!flags_done && is_flag(a)) {
            rc = take_flag(&b, c, argc, argv, &i, out);
            /* eval: what follows -e CODE is the code's */
            if (c->flags_first && strcmp(a, "-e") == 0)
                flags_done = true;
        } else {
            rc = push(&b.pos, &b.npos, mcp_strdup(a));
            if (c->flags_first)
                flags_done = true;
        }
    }
    if (rc != 0) {
        fprintf(stderr, "mcp-agent: out of memory\n");
        builder_free(&b);
        return -1;
    }
    if (out->help) {
        builder_free(&b);
        return 0;
    }
    check_counts(&b, c);
    if (b.problem[0]) {
        fprintf(stderr, "mcp-agent: %s: %s (usage: mcp-agent ", c->name, b.problem);
        command_print_synopsis(stderr, c);
        fprintf(stderr, ")\n");
        builder_free(&b);
        return -1;
    }
    if (assemble(&b, out) != 0) {
        fprintf(stderr, "mcp-agent: out of memory\n");
        builder_free(&b);
        return -1;
    }
    builder_free(&b);
    return 0;
}

void args_free(parsed_args *p)
{
    for (int i = 0; p->argv && i < p->argc; i++)
        free(p->argv[i]);
    free(p->argv);
    p->argv = NULL;
    p->argc = 0;
}
