/*
 * Signed checkpoints of the audit log: the data directory's Ed25519 key
 * (DATA/audit.key) and the checkpoint's canonical text, JSON and signature.
 *
 * The key file is PEM PKCS#8, created once with mode 0600 and never replaced:
 * a file that exists but cannot be read or parsed stops the start, because a
 * silently new key would make every checkpoint saved so far unverifiable
 * against the server's current key.  No key material reaches a log line.
 */
#include "audit_int.h"

#include "arca_err.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KEY_FILE_MAX 16384
#define TEXT_MAX 256

struct audit_signer {
    EVP_PKEY *key;
    uint8_t pub[32];
    char key_id[17];
};

static void key_id_of(const uint8_t pub[32], char out[17])
{
    uint8_t h[32];
    unsigned int n = sizeof(h);
    EVP_Digest(pub, 32, h, &n, EVP_sha256(), NULL);
    hex_encode(h, 8, out);
}

/* Encrypted keys are not supported: never prompt on a terminal for a passphrase. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return 0;
}

static int key_create(const char *path, EVP_PKEY **out)
{
    int rc = ARCA_E_CRYPTO;
    char *data = NULL;
    long len = 0;
    BIO *bio = NULL;
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!key || !(bio = BIO_new(BIO_s_mem())) ||
        !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL)) {
        LOG_E("audit: cannot generate an Ed25519 key");
        goto out;
    }
    len = BIO_get_mem_data(bio, &data);
    if (len <= 0)
        goto out;
    if ((rc = fs_write_atomic(path, data, (size_t)len, 0600)) != 0) {
        LOG_E("audit: cannot write %s: %s", path, arca_strerror(rc));
        goto out;
    }
    *out = key;
    key = NULL;
out:
    if (data && len > 0)
        OPENSSL_cleanse(data, (size_t)len);
    BIO_free(bio);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

static int key_load(const char *path, EVP_PKEY **out)
{
    char *text = NULL;
    size_t len = 0;
    BIO *bio = NULL;
    EVP_PKEY *key = NULL;
    struct stat st;
    int rc = fs_read_small(path, KEY_FILE_MAX, &text, &len);
    if (rc == -ENOENT)
        return rc; /* the caller creates it, or says it is missing */
    if (rc != 0) {
        LOG_E("audit: cannot read the audit key %s: %s", path,
              rc == ARCA_E_TOOBIG ? "too large to be a key" : arca_strerror(rc));
        return rc == ARCA_E_TOOBIG ? ARCA_E_CONFIG : rc;
    }
    if (stat(path, &st) == 0 && (st.st_mode & 077))
        LOG_W("audit: %s is readable by others (mode %03o); it should be 0600", path,
              (unsigned)(st.st_mode & 0777));
    rc = ARCA_E_CONFIG;
    if (len > INT_MAX || !(bio = BIO_new_mem_buf(text, (int)len)) ||
        !(key = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL))) {
        LOG_E("audit: %s is not a PEM private key (not replacing it: move it away to make a new "
              "key, which invalidates saved checkpoints)", path);
        goto out;
    }
    if (!EVP_PKEY_is_a(key, "ED25519")) {
        LOG_E("audit: %s is not an Ed25519 key", path);
        goto out;
    }
    *out = key;
    key = NULL;
    rc = 0;
out:
    OPENSSL_cleanse(text, len);
    free(text);
    BIO_free(bio);
    EVP_PKEY_free(key);
    ERR_clear_error();
    return rc;
}

int audit_signer_open(const char *data_dir, bool create, audit_signer **out, int *created)
{
    char path[PATH_MAX];
    size_t publen = 32;
    int rc;
    audit_signer *s = calloc(1, sizeof(*s));
    *out = NULL;
    *created = 0;
    if (!s)
        return -ENOMEM;
    if (snprintf(path, sizeof(path), "%s/%s", data_dir, AUDIT_KEY_FILE) >= (int)sizeof(path)) {
        rc = -ENAMETOOLONG;
        goto out;
    }
    rc = key_load(path, &s->key);
    if (rc == -ENOENT && create) {
        if ((rc = key_create(path, &s->key)) == 0)
            *created = 1;
    } else if (rc == -ENOENT) {
        LOG_E("audit: there is no audit key %s", path);
    }
    if (rc != 0)
        goto out;
    if (!EVP_PKEY_get_raw_public_key(s->key, s->pub, &publen) || publen != 32) {
        ERR_clear_error();
        rc = ARCA_E_CRYPTO;
        goto out;
    }
    key_id_of(s->pub, s->key_id);
    *out = s;
    s = NULL;
out:
    audit_signer_free(s);
    return rc;
}

void audit_signer_free(audit_signer *s)
{
    if (!s)
        return;
    EVP_PKEY_free(s->key);
    free(s);
}

void audit_signer_public(const audit_signer *s, uint8_t public_key[32], char key_id[17])
{
    memcpy(public_key, s->pub, 32);
    memcpy(key_id, s->key_id, 17);
}

size_t audit_checkpoint_text(const struct audit_checkpoint *cp, char *buf, size_t cap)
{
    char root[65];
    hex_encode(cp->root, AUDIT_HASH_LEN, root);
    int n = snprintf(buf, cap, "%s\n%s\n%llu\n%s\n%s\n",
                     cp->tree == AUDIT_TREE_ORIGIN ? "arca-origin-checkpoint/v1"
                                                   : "arca-checkpoint/v1",
                     cp->origin, (unsigned long long)cp->size, root, cp->time);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

int checkpoint_sign(const audit_signer *s, struct audit_checkpoint *cp)
{
    char text[TEXT_MAX];
    size_t siglen = sizeof(cp->signature), tlen;
    int rc;
    time_format_iso(time_now_ms(), cp->time);
    memcpy(cp->public_key, s->pub, 32);
    memcpy(cp->key_id, s->key_id, sizeof(cp->key_id));
    if ((tlen = audit_checkpoint_text(cp, text, sizeof(text))) == 0)
        return ARCA_E_INVALID;
    rc = ARCA_E_CRYPTO;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    /* Ed25519 signs the message itself (no digest): EVP_DigestSign in one shot. */
    if (ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, s->key) == 1 &&
        EVP_DigestSign(ctx, cp->signature, &siglen, (const unsigned char *)text, tlen) == 1 &&
        siglen == sizeof(cp->signature))
        rc = 0;
    else
        LOG_E("audit: signing a checkpoint failed");
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

int audit_checkpoint_make(repo_db *db, const audit_signer *s, uint64_t size,
                          struct audit_checkpoint *cp)
{
    int rc;
    memset(cp, 0, sizeof(*cp));
    if (size == UINT64_MAX && (rc = audit_size(db, &size)) != 0)
        return rc;
    if ((rc = audit_root(db, size, cp->root)) != 0)
        return rc;
    cp->tree = AUDIT_TREE_LOCAL;
    snprintf(cp->origin, sizeof(cp->origin), "%s", db->centre);
    cp->size = size;
    return checkpoint_sign(s, cp);
}

bool audit_checkpoint_signature_ok(const struct audit_checkpoint *cp)
{
    char text[TEXT_MAX], id[17];
    bool ok = false;
    size_t tlen = audit_checkpoint_text(cp, text, sizeof(text));
    key_id_of(cp->public_key, id);
    if (tlen == 0 || strcmp(id, cp->key_id) != 0)
        return false;
    EVP_PKEY *pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, cp->public_key, 32);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (pub && ctx && EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) == 1 &&
        EVP_DigestVerify(ctx, cp->signature, sizeof(cp->signature), (const unsigned char *)text,
                         tlen) == 1)
        ok = true;
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pub);
    ERR_clear_error();
    return ok;
}

/* Standard base64 with padding, no line breaks. */
static json_t *b64_json(const uint8_t *b, size_t len)
{
    char out[4 * ((64 + 2) / 3) + 1];
    if (len > 64)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, b, (int)len);
    return json_string(out);
}

/* Decodes exactly len bytes from canonical base64 (re-encoding must give s back). */
static int b64_decode(const char *s, uint8_t *out, size_t len)
{
    unsigned char buf[4 * ((64 + 2) / 3) + 1], again[sizeof(buf)];
    size_t slen = strlen(s);
    if (len > 64 || slen != 4 * ((len + 2) / 3))
        return ARCA_E_INVALID;
    if (EVP_DecodeBlock(buf, (const unsigned char *)s, (int)slen) < (int)len)
        return ARCA_E_INVALID;
    EVP_EncodeBlock(again, buf, (int)len);
    if (strcmp((const char *)again, s) != 0)
        return ARCA_E_INVALID;
    memcpy(out, buf, len);
    return 0;
}

json_t *audit_checkpoint_json(const struct audit_checkpoint *cp)
{
    char root[65];
    hex_encode(cp->root, AUDIT_HASH_LEN, root);
    json_t *o = json_pack("{s:s,s:I,s:s,s:s,s:s,s:o,s:o}", "origin", cp->origin, "size",
                          (json_int_t)cp->size, "root", root, "time", cp->time, "key_id",
                          cp->key_id, "public_key", b64_json(cp->public_key, 32), "signature",
                          b64_json(cp->signature, 64));
    if (o && cp->tree == AUDIT_TREE_ORIGIN &&
        json_object_set_new(o, "tree", json_string("origin")) != 0) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

/* A one-line field of the signed text: printable ASCII, no newline, 1..cap-1 bytes. */
static bool text_field(const char *s, size_t cap)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= cap)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

int checkpoint_from_json(json_t *o, struct audit_checkpoint *cp, const char **why)
{
    int rc = ARCA_E_INVALID;
    memset(cp, 0, sizeof(*cp));
    *why = "not a JSON object";
    if (!json_is_object(o))
        goto out;
    json_t *tree = json_object_get(o, "tree");
    const char *origin = json_string_value(json_object_get(o, "origin"));
    const char *root = json_string_value(json_object_get(o, "root"));
    const char *time = json_string_value(json_object_get(o, "time"));
    const char *key_id = json_string_value(json_object_get(o, "key_id"));
    const char *pub = json_string_value(json_object_get(o, "public_key"));
    const char *sig = json_string_value(json_object_get(o, "signature"));
    json_t *size = json_object_get(o, "size");
    if (tree && !(json_is_string(tree) && strcmp(json_string_value(tree), "origin") == 0)) {
        *why = "tree must be \"origin\" (an origin checkpoint) or absent (the local log's)";
    } else if (!text_field(origin, sizeof(cp->origin))) {
        *why = "origin must be a string of 1-64 printable characters";
    } else if (!json_is_integer(size) || json_integer_value(size) < 0) {
        *why = "size must be a non-negative integer";
    } else if (!root || hex_decode(root, strlen(root), cp->root, AUDIT_HASH_LEN) != 0) {
        *why = "root must be 64 hex digits";
    } else if (!text_field(time, sizeof(cp->time))) {
        *why = "time must be a string of 1-31 printable characters";
    } else if (!key_id || strlen(key_id) != 16 || strspn(key_id, "0123456789abcdef") != 16) {
        *why = "key_id must be 16 lowercase hex digits";
    } else if (!pub || b64_decode(pub, cp->public_key, 32) != 0) {
        *why = "public_key must be the base64 of 32 bytes";
    } else if (!sig || b64_decode(sig, cp->signature, 64) != 0) {
        *why = "signature must be the base64 of 64 bytes";
    } else {
        snprintf(cp->origin, sizeof(cp->origin), "%s", origin);
        snprintf(cp->time, sizeof(cp->time), "%s", time);
        memcpy(cp->key_id, key_id, 17);
        cp->size = (uint64_t)json_integer_value(size);
        cp->tree = tree ? AUDIT_TREE_ORIGIN : AUDIT_TREE_LOCAL;
        *why = NULL;
        rc = 0;
    }
out:
    if (rc != 0)
        memset(cp, 0, sizeof(*cp)); /* nothing half-parsed is left for a careless caller */
    return rc;
}

int audit_checkpoint_parse(const char *text, size_t len, struct audit_checkpoint *cp,
                           const char **why)
{
    json_t *o = json_loadb(text, len, 0, NULL);
    int rc = checkpoint_from_json(o, cp, why);
    json_decref(o);
    return rc;
}
