#include "tls.h"

#include "arca_err.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tls_ctx {
    pthread_mutex_t mu;  /* guards ctx against a reload */
    SSL_CTX *ctx;
    char cert_file[1024];
    char key_file[1024];
    char client_ca_file[1024];
    enum tls_client_auth mode;
};

int tls_client_auth_parse(const char *s)
{
    if (strcmp(s, "off") == 0)
        return TLS_CLIENT_AUTH_OFF;
    if (strcmp(s, "optional") == 0)
        return TLS_CLIENT_AUTH_OPTIONAL;
    if (strcmp(s, "required") == 0)
        return TLS_CLIENT_AUTH_REQUIRED;
    return -1;
}

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

/* Asks for, and verifies, client certificates issued by the CAs in t->client_ca_file. */
static int setup_client_auth(SSL_CTX *ctx, const struct tls_ctx *t, char *err, size_t errlen)
{
    char why[256];
    const char *ca = t->client_ca_file;
    /* Trust only these CAs for clients: the context never loads the system store. */
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        snprintf(err, errlen, "tls.client_ca_file %s: %s", ca, ossl_error(why, sizeof(why)));
        return ARCA_E_CONFIG;
    }
    /* The CA names go into the CertificateRequest, so a client can pick the right certificate. */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
    if (!names) {
        snprintf(err, errlen, "tls.client_ca_file %s: no CA certificate in it", ca);
        ERR_clear_error();
        return ARCA_E_CONFIG;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    int mode = SSL_VERIFY_PEER | SSL_VERIFY_CLIENT_ONCE;
    if (t->mode == TLS_CLIENT_AUTH_REQUIRED)
        mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, mode, NULL);
    SSL_CTX_set_verify_depth(ctx, 8);
    return 0;
}

static SSL_CTX *build(const struct tls_ctx *t, char *err, size_t errlen)
{
    char why[256];
    const char *cert = t->cert_file, *key = t->key_file;
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
    /* Session resumption with client verification on needs a context id (else OpenSSL fails
     * the resumed handshake); a resumed session keeps the certificate verified the first time. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"arca", 4);
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
    if (t->mode != TLS_CLIENT_AUTH_OFF && setup_client_auth(ctx, t, err, errlen) != 0)
        goto fail;
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int tls_ctx_new(const char *cert_file, const char *key_file, const char *client_ca_file,
                enum tls_client_auth mode, tls_ctx **out, char *err, size_t errlen)
{
    tls_ctx *t = calloc(1, sizeof(*t));
    if (!t)
        return ARCA_E_CONFIG;
    snprintf(t->cert_file, sizeof(t->cert_file), "%s", cert_file);
    snprintf(t->key_file, sizeof(t->key_file), "%s", key_file);
    snprintf(t->client_ca_file, sizeof(t->client_ca_file), "%s",
             client_ca_file ? client_ca_file : "");
    t->mode = mode;
    t->ctx = build(t, err, errlen);
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
    SSL_CTX *fresh = build(t, err, errlen);
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

/* The subject's CN when there is exactly one and it is 1..cap-1 bytes of printable ASCII. */
static void subject_cn(X509 *x, char *cn, size_t cap)
{
    cn[0] = '\0';
    X509_NAME *subj = X509_get_subject_name(x);
    int idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
    if (idx < 0 || X509_NAME_get_index_by_NID(subj, NID_commonName, idx) >= 0)
        return; /* none, or several: which one names the client would be a guess */
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
    bool ok = n >= 1 && (size_t)n < cap;
    for (int i = 0; ok && i < n; i++)
        ok = utf8[i] >= 0x20 && utf8[i] < 0x7f;
    if (ok) {
        memcpy(cn, utf8, (size_t)n);
        cn[n] = '\0';
    }
    OPENSSL_free(utf8);
}

int tls_peer_cert(SSL *ssl, char *cn, size_t cn_cap, uint8_t sha256[32])
{
    X509 *x = SSL_get0_peer_certificate(ssl);
    /* With SSL_VERIFY_PEER a bad certificate fails the handshake; checked again regardless. */
    if (!x || SSL_get_verify_result(ssl) != X509_V_OK)
        return ARCA_E_NOTFOUND;
    unsigned int len = 32;
    if (X509_digest(x, EVP_sha256(), sha256, &len) != 1 || len != 32) {
        ERR_clear_error();
        return ARCA_E_NOTFOUND;
    }
    subject_cn(x, cn, cn_cap);
    return 0;
}

const char *tls_handshake_failure(SSL *ssl, unsigned long code, char *buf, size_t len)
{
    const char *reason = code ? ERR_reason_error_string(code) : NULL;
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (vr != X509_V_OK)
        snprintf(buf, len, "%s: %s", reason ? reason : "certificate verify failed",
                 X509_verify_cert_error_string(vr));
    else
        snprintf(buf, len, "%s", reason ? reason : "connection closed");
    return buf;
}
