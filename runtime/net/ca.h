/* ca.h — where the TLS certificate authorities are (internal;
 * runtime/net/ca.c). */
#ifndef APR_NET_CA_H
#define APR_NET_CA_H

/* $SSL_CERT_FILE, else the first CA bundle found at a distribution's usual
 * place, else NULL (libcurl's own default). */
const char *apr_net_ca_bundle(void);

#endif
