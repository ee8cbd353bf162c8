/*
 * TLS for the HTTPS listener: an OpenSSL server context that can be reloaded
 * (SIGHUP) while connections are open.  Each connection's SSL holds its own
 * reference to the context it started with, so swapping the context never
 * disturbs an open connection.
 *
 * Client certificates (mTLS): with a client CA file the server asks every
 * client for a certificate, names those CAs in the request, and verifies a
 * certificate that is sent against them only (never the system store):
 * signature chain, validity dates, and the TLS client purpose.  A certificate
 * that fails verification fails the handshake.  optional: a client that sends
 * none is let in (it authenticates with a token, or is anonymous); required:
 * it fails the handshake.  Who a verified certificate is, is auth/'s business
 * (auth_authenticate_cert); this module only reads the facts out of it.
 */
#ifndef ARCA_TLS_H
#define ARCA_TLS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ssl_st SSL;
typedef struct tls_ctx tls_ctx;

enum tls_client_auth {
    TLS_CLIENT_AUTH_OFF,      /* no certificate is asked for */
    TLS_CLIENT_AUTH_OPTIONAL, /* asked for; verified when sent */
    TLS_CLIENT_AUTH_REQUIRED, /* asked for; the handshake fails without a valid one */
};

/* "off", "optional", "required" → the mode; -1 for anything else. */
int tls_client_auth_parse(const char *s);

/*
 * Loads cert_file (PEM, may hold the chain) and key_file, and for a mode
 * other than off the client CA certificates in client_ca_file (PEM, one or
 * more).  0, or ARCA_E_CONFIG with a message naming the setting and the file
 * in err.
 */
int tls_ctx_new(const char *cert_file, const char *key_file, const char *client_ca_file,
                enum tls_client_auth mode, tls_ctx **out, char *err, size_t errlen);
/* Loads the files again (client CAs too); on failure the old ones stay (err says why). */
int tls_ctx_reload(tls_ctx *t, char *err, size_t errlen);
/* A new server-side SSL for one connection (NULL on OOM); the caller owns it. */
SSL *tls_ctx_new_ssl(tls_ctx *t);
void tls_ctx_free(tls_ctx *t);

#define TLS_PEER_CN_MAX 64

/*
 * The client certificate of a connection whose handshake is complete, if
 * the client sent one and it verified: its subject CN into cn (cn_cap bytes;
 * "" when the subject has no CN, several, or one that is not 1-64 bytes of
 * printable ASCII) and the SHA-256 of its DER encoding into sha256.
 * 0, or ARCA_E_NOTFOUND when there is no verified certificate.
 */
int tls_peer_cert(SSL *ssl, char *cn, size_t cn_cap, uint8_t sha256[32]);

/*
 * Why a handshake failed, for the log: the reason of OpenSSL error code
 * (0: unknown) and, when a client certificate failed verification, why it
 * did ("certificate verify failed: certificate has expired").  Returns buf.
 */
const char *tls_handshake_failure(SSL *ssl, unsigned long code, char *buf, size_t len);

#endif
