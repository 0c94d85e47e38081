/* The hidden `complete` command. Completion must never print errors into a
 * shell line, so the registry part is quiet: no registry, no names. */
#include "complete.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "mcp/registry.h"
#include "mcp/service.h"

/* The positional arguments: after the "--" that args_parse puts first. */
static char **positional(const parsed_args *p, int *n)
{
    for (int i = 0; i < p->argc; i++) {
        if (strcmp(p->argv[i], "--") == 0) {
            *n = p->argc - i - 1;
            return p->argv + i + 1;
        }
    }
    *n = 0;
    return NULL;
}

static void print_commands(void)
{
    const command *c;
    for (size_t i = 0; (c = command_at(i)) != NULL; i++)
        if (!c->hidden)
            printf("%s\n", c->name);
}

static int print_flags(const char *name)
{
    const command *c = command_find(name);
    if (!c)
        return 2;
    for (size_t i = 0; i < MAX_FLAGS && c->flags[i].name; i++)
        printf("%s\n", c->flags[i].name);
    printf("--help\n");
    return 0;
}

/* SERVICE and SERVICE/COMPONENT for every service in the registry. */
static int print_services(const char *db_path)
{
    struct stat st;
    if (!db_path || stat(db_path, &st) != 0)
        return 0; /* never create a registry to complete a word */
    mcp_registry *reg = NULL;
    mcp_error err = {{0}};
    if (mcp_registry_open_brief(db_path, &reg, &err) != 0)
        return 1;
    mcp_service *svcs = NULL;
    size_t n = 0;
    int rc = mcp_registry_list_services(reg, &svcs, &n, &err) == 0 ? 0 : 1;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        printf("%s\n", svcs[i].name);
        for (size_t j = 0; j < svcs[i].n_components; j++)
            printf("%s/%s\n", svcs[i].name, svcs[i].components[j].name);
    }
    mcp_services_free(svcs, n);
    mcp_registry_close(reg);
    return rc;
}

/* Text with scdoc's markup characters escaped. */
static void scdoc_text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '*' || *s == '_' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
}

static void scdoc_synopsis(FILE *f, const command *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m)
        return;
    command_print_synopsis(m, c);
    if (fclose(m) != 0) {
        free(buf);
        return;
    }
    const char *rest = buf + strlen(c->name);
    fprintf(f, "*%s*", c->name);
    scdoc_text(f, rest);
    free(buf);
}

/* The COMMANDS section of mcp-agent(8), in scdoc. */
static void print_scdoc(void)
{
    const command *c;
    printf("# COMMANDS\n\n");
    for (size_t i = 0; (c = command_at(i)) != NULL; i++) {
        if (c->hidden)
            continue;
        scdoc_synopsis(stdout, c);
        printf("\n\t%c",
               c->summary[0] >= 'a' && c->summary[0] <= 'z' ? c->summary[0] - 32 : c->summary[0]);
        scdoc_text(stdout, c->summary + 1);
        printf(".");
        const char *note = command_registry_note(c);
        if (note) {
            printf(" It ");
            scdoc_text(stdout, note);
            printf(".");
        }
        printf("\n\n");
        for (size_t k = 0; k < MAX_FLAGS && c->flags[k].name; k++) {
            const flag_spec *fl = &c->flags[k];
            printf("\t*%s*", fl->name);
            if (fl->value)
                printf(" _%s_", fl->value);
            printf("\n\t\t");
            scdoc_text(stdout, fl->help);
            printf(".\n\n");
        }
    }
}

int complete_command(const parsed_args *p, const char *db_path)
{
    int n;
    char **args = positional(p, &n);
    const char *what = n > 0 ? args[0] : "";
    if (strcmp(what, "commands") == 0 && n == 1) {
        print_commands();
        return 0;
    }
    if (strcmp(what, "flags") == 0 && n == 2)
        return print_flags(args[1]);
    if (strcmp(what, "services") == 0 && n == 1)
        return print_services(db_path);
    if (strcmp(what, "scdoc") == 0 && n == 1) {
        print_scdoc();
        return 0;
    }
    fprintf(stderr, "usage: mcp-agent complete (commands | flags COMMAND | services | scdoc)\n");
    return 2;
}
