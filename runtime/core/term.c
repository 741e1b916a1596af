/* term.c — the terminal: isatty and line input with optional GNU readline.
 *
 * readline is loaded with dlopen when present, so the apr binary and its
 * bundle run on machines without it; there, input is read plainly. On a
 * terminal, Ctrl+C while waiting for a line ends the read (an empty line,
 * apr_interrupted() set), so `apr chat` and `apr repl` can answer it. */
#include "apr.h"

#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
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
    /* The callback interface, so a Ctrl+C at the prompt can end the read
     * (readline's own blocking call restarts its read and goes on). */
    void (*handler_install)(const char *, void (*)(char *));
    void (*read_char)(void);
    void (*handler_remove)(void);
    void (*free_line_state)(void);
    void (*sigcleanup)(void);
    int *catch_signals;
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
    rl.handler_install = (void (*)(const char *, void (*)(char *)))dlsym(h, "rl_callback_handler_install");
    rl.read_char = (void (*)(void))dlsym(h, "rl_callback_read_char");
    rl.handler_remove = (void (*)(void))dlsym(h, "rl_callback_handler_remove");
    rl.free_line_state = (void (*)(void))dlsym(h, "rl_free_line_state");
    rl.sigcleanup = (void (*)(void))dlsym(h, "rl_callback_sigcleanup");
    rl.catch_signals = (int *)dlsym(h, "rl_catch_signals");
    if (!rl.readline) rl.add_history = NULL, rl.read_history = NULL, rl.write_history = NULL;
    if (!rl.handler_install || !rl.read_char || !rl.handler_remove || !rl.free_line_state || !rl.catch_signals)
        rl.handler_install = NULL;
}

int apr_term_isatty(int fd) { return isatty(fd); }

/* Waits until stdin has input; 0 then, -1 when Ctrl+C came first (ppoll is
 * never restarted after a signal, whatever SA_RESTART says). SIGINT is
 * blocked but for the wait itself, so one that lands between the check of
 * the flag and the wait still ends the wait. */
static int wait_input(void)
{
    sigset_t sigint, old;
    sigemptyset(&sigint);
    sigaddset(&sigint, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigint, &old);
    int result = 0;
    for (;;) {
        if (apr_interrupted()) {
            result = -1;
            break;
        }
        struct pollfd pfd = { 0, POLLIN, 0 };
        int r = ppoll(&pfd, 1, NULL, &old);
        if (r > 0 || (r < 0 && errno != EINTR)) break;  /* input, or an error the read will report */
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return result;
}

static struct { int done; char *line; } cb;

static void on_line(char *line)
{
    cb.done = 1;
    cb.line = line;
    rl.handler_remove();
}

static char *interrupted_line(void)
{
    char *empty = malloc(1);
    if (empty) empty[0] = '\0';
    return empty;
}

/* readline through its callback interface, with our own SIGINT handler
 * left in place (rl_catch_signals 0): a Ctrl+C drops what was typed and
 * returns "" with apr_interrupted() set. */
static char *readline_interruptible(const char *prompt)
{
    *rl.catch_signals = 0;
    cb.done = 0;
    cb.line = NULL;
    rl.handler_install(prompt ? prompt : "", on_line);
    while (!cb.done) {
        if (wait_input() < 0) {
            rl.free_line_state();
            if (rl.sigcleanup) rl.sigcleanup();
            rl.handler_remove();
            fputs("\n", stdout);
            fflush(stdout);
            return interrupted_line();
        }
        rl.read_char();
    }
    return cb.line;
}

char *apr_term_readline(const char *prompt)
{
    int tty = isatty(0);
    if (tty) {
        load_readline();
        if (rl.handler_install) return readline_interruptible(prompt);
        if (rl.readline) return rl.readline(prompt);
    }
    if (prompt && tty) { fputs(prompt, stdout); fflush(stdout); }
    size_t cap = 256, len = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    int c;
    for (;;) {
        if (tty) {
            /* Byte by byte with read(), not stdio: input stdio buffered
             * would not wake poll. */
            if (wait_input() < 0) {
                free(buf);
                fputs("\n", stdout);
                fflush(stdout);
                return interrupted_line();
            }
            unsigned char b;
            ssize_t n = read(0, &b, 1);
            c = n == 1 ? b : EOF;
        } else {
            c = getchar();
        }
        if (c == EOF || c == '\n') break;
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
