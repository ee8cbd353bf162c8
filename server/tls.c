#include "tls.h"

#include "arca_err.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_ctx {
    pthread_mutex_t mu;  /* guards ctx against a reload */
    SSL_CTX *ctx;
    char cert_file[1024];
    char key_file[1024];
};

/* The last OpenSSL error as text (the queue is cleared). */
static const char *ossl_error(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (!e)
        snprintf(buf, len, "unknown error");
    else
        ERR_error_string_n(e, buf, len);
    ERR_clear_error();
    return buf;
}

static SSL_CTX *build(const char *cert, const char *key, char *err, size_t errlen)
{
    char why[256];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context: %s", ossl_error(why, sizeof(why)));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* TLS 1.2: forward secrecy and AEAD only; TLS 1.3 keeps OpenSSL's defaults. */
    SSL_CTX_set_cipher_list(ctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "tls.cert_file %s: %s", cert, ossl_error(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errlen, "tls.key_file %s: %s", key, ossl_error(why, sizeof(why)));
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "tls.key_file %s does not match tls.cert_file %s", key, cert);
        ERR_clear_error();
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_ctx_new(const char *cert_file, const char *key_file, tls_ctx **out, char *err,
                size_t errlen)
{
    tls_ctx *t = calloc(1, sizeof(*t));
    if (!t)
        return ARCA_E_CONFIG;
    snprintf(t->cert_file, sizeof(t->cert_file), "%s", cert_file);
    snprintf(t->key_file, sizeof(t->key_file), "%s", key_file);
    t->ctx = build(cert_file, key_file, err, errlen);
    if (!t->ctx) {
        free(t);
        return ARCA_E_CONFIG;
    }
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return 0;
}

int tls_ctx_reload(tls_ctx *t, char *err, size_t errlen)
{
    SSL_CTX *fresh = build(t->cert_file, t->key_file, err, errlen);
    if (!fresh)
        return ARCA_E_CONFIG;
    pthread_mutex_lock(&t->mu);
    SSL_CTX *old = t->ctx;
    t->ctx = fresh;
    pthread_mutex_unlock(&t->mu);
    SSL_CTX_free(old); /* open connections' SSLs still hold references to it */
    return 0;
}

SSL *tls_ctx_new_ssl(tls_ctx *t)
{
    pthread_mutex_lock(&t->mu);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->mu);
    return ssl;
}

void tls_ctx_free(tls_ctx *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->mu);
    free(t);
}
