/* term.c — the terminal: isatty and line input with optional GNU readline.
 *
 * readline is loaded with dlopen when present, so the apr binary and its
 * bundle run on machines without it; there, input is read plainly. */
#include "apr.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    int tried;
    char *(*readline)(const char *);
    void (*add_history)(const char *);
    int (*read_history)(const char *);
    int (*write_history)(const char *);
} rl;

static void load_readline(void)
{
    if (rl.tried) return;
    rl.tried = 1;
    const char *names[] = { "libreadline.so.8", "libreadline.so", NULL };
    void *h = NULL;
    for (int i = 0; names[i] && !h; i++) h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
    rl.readline = (char *(*)(const char *))dlsym(h, "readline");
    rl.add_history = (void (*)(const char *))dlsym(h, "add_history");
    rl.read_history = (int (*)(const char *))dlsym(h, "read_history");
    rl.write_history = (int (*)(const char *))dlsym(h, "write_history");
    if (!rl.readline) rl.add_history = NULL, rl.read_history = NULL, rl.write_history = NULL;
}

int apr_term_isatty(int fd) { return isatty(fd); }

char *apr_term_readline(const char *prompt)
{
    if (isatty(0)) {
        load_readline();
        if (rl.readline) return rl.readline(prompt);
    }
    if (prompt && isatty(0)) { fputs(prompt, stdout); fflush(stdout); }
    size_t cap = 256, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    int c;
    while ((c = getchar()) != EOF && c != '\n') {
        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) { free(buf); return NULL; }
            buf = nb;
        }
        buf[len++] = (char)c;
    }
    if (c == EOF && len == 0) { free(buf); return NULL; }
    buf[len] = '\0';
    return buf;
}

void apr_term_add_history(const char *line)
{
    if (rl.add_history && line && *line) rl.add_history(line);
}

void apr_term_load_history(const char *path)
{
    load_readline();
    if (rl.read_history && path) rl.read_history(path);
}

void apr_term_save_history(const char *path)
{
    if (rl.write_history && path) rl.write_history(path);
}

void apr_free(void *p) { free(p); }
