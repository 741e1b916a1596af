/* ca.c — where the TLS certificate authorities are.
 *
 * libcurl looks for them at the path its distribution compiled in (Debian:
 * /etc/ssl/certs/ca-certificates.crt). The bundle (make bundle) carries
 * Debian's libcurl to machines that may keep them elsewhere, so the usual
 * places of the other distributions are tried too; $SSL_CERT_FILE, as
 * OpenSSL and curl's own tool read it, comes first. */
#include <stdlib.h>
#include <unistd.h>

#include "net/ca.h"

const char *apr_net_ca_bundle(void)
{
    const char *env = getenv("SSL_CERT_FILE");
    if (env && *env) return env;
    static const char *places[] = {
        "/etc/ssl/certs/ca-certificates.crt",   /* Debian, Ubuntu, Arch */
        "/etc/pki/tls/certs/ca-bundle.crt",     /* Fedora, RHEL */
        "/etc/ssl/ca-bundle.pem",               /* openSUSE */
        "/etc/ssl/cert.pem",                    /* Alpine */
    };
    for (size_t i = 0; i < sizeof places / sizeof *places; i++) {
        if (access(places[i], R_OK) == 0) return places[i];
    }
    return NULL;
}
