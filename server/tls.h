/*
 * TLS for the HTTPS listener: an OpenSSL server context that can be reloaded
 * (SIGHUP) while connections are open.  Each connection's SSL holds its own
 * reference to the context it started with, so swapping the context never
 * disturbs an open connection.
 */
#ifndef ARCA_TLS_H
#define ARCA_TLS_H

#include <stddef.h>

typedef struct ssl_st SSL;
typedef struct tls_ctx tls_ctx;

/*
 * Loads cert_file (PEM, may hold the chain) and key_file.  0, or
 * ARCA_E_CONFIG with a message naming the file in err.
 */
int tls_ctx_new(const char *cert_file, const char *key_file, tls_ctx **out, char *err,
                size_t errlen);
/* Loads the files again; on failure the old certificate stays (err says why). */
int tls_ctx_reload(tls_ctx *t, char *err, size_t errlen);
/* A new server-side SSL for one connection (NULL on OOM); the caller owns it. */
SSL *tls_ctx_new_ssl(tls_ctx *t);
void tls_ctx_free(tls_ctx *t);

#endif
