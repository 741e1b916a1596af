/* interrupt.c — Ctrl+C as a request, not a kill.
 *
 * The first SIGINT only raises a flag that long-running work (generation,
 * hashing, scans) polls between steps, so `apr chat` can stop one answer and
 * keep the session, and `apr pass` can exit 130 after flushing what it wrote.
 * A second SIGINT before the first was noticed means the program is stuck:
 * the default action is restored and the signal re-raised, which kills it. */
#include "apr.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t pending;

static void on_sigint(int sig)
{
    if (pending) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    pending = 1;
}

void apr_interrupt_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
}

int apr_interrupted(void) { return pending != 0; }

void apr_interrupt_clear(void) { pending = 0; }
