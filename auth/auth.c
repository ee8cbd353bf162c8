#include "auth.h"

#include "arca_err.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct auth {
    unsigned char admin_hash[32];
};

static void sha256(const void *data, size_t len, unsigned char out[32])
{
    unsigned int n = 32;
    EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

int auth_open(const char *data_dir, auth **out, int *created)
{
    char path[PATH_MAX];
    char *text = NULL;
    size_t len = 0;
    int rc;
    auth *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    *created = 0;
    snprintf(path, sizeof(path), "%s/admin.token", data_dir);
    rc = fs_read_small(path, 4096, &text, &len);
    if (rc == -ENOENT) {
        unsigned char secret[32];
        char hex[65], line[80];
        if ((rc = rand_bytes(secret, sizeof(secret))) != 0)
            goto out;
        hex_encode(secret, sizeof(secret), hex);
        OPENSSL_cleanse(secret, sizeof(secret));
        int n = snprintf(line, sizeof(line), "arca_%s\n", hex);
        if ((rc = fs_write_atomic(path, line, (size_t)n, 0600)) != 0)
            goto out;
        sha256(line, (size_t)n - 1, a->admin_hash);
        OPENSSL_cleanse(line, sizeof(line));
        OPENSSL_cleanse(hex, sizeof(hex));
        *created = 1;
    } else if (rc == 0) {
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
            len--;
        if (len == 0) {
            rc = ARCA_E_INVALID;
            goto out;
        }
        sha256(text, len, a->admin_hash);
    } else {
        goto out;
    }
    *out = a;
    a = NULL;
    rc = 0;
out:
    if (text) {
        OPENSSL_cleanse(text, len);
        free(text);
    }
    free(a);
    return rc;
}

void auth_free(auth *a)
{
    free(a);
}

static int b64dec(const char *in, size_t len, unsigned char *out, size_t max)
{
    if (len % 4 != 0 || len / 4 * 3 > max)
        return -1;
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0)
        return -1;
    while (len > 0 && in[len - 1] == '=') {
        n--;
        len--;
    }
    return n;
}

int auth_identify(const auth *a, const char *authorization, char *actor, size_t actorlen)
{
    unsigned char hash[32];
    unsigned char decoded[512];
    const char *secret = NULL;
    size_t secretlen = 0;
    snprintf(actor, actorlen, "anonymous");
    if (!authorization || !*authorization)
        return 1;
    if (strncasecmp(authorization, "Bearer ", 7) == 0) {
        secret = authorization + 7;
        while (*secret == ' ')
            secret++;
        secretlen = strlen(secret);
    } else if (strncasecmp(authorization, "Basic ", 6) == 0) {
        const char *b = authorization + 6;
        while (*b == ' ')
            b++;
        int n = b64dec(b, strlen(b), decoded, sizeof(decoded) - 1);
        if (n < 0)
            return ARCA_E_INVALID;
        const char *colon = memchr(decoded, ':', (size_t)n);
        if (!colon)
            return ARCA_E_INVALID;
        secret = colon + 1;
        secretlen = (size_t)n - (size_t)(colon + 1 - (const char *)decoded);
    } else {
        return ARCA_E_INVALID;
    }
    sha256(secret, secretlen, hash);
    OPENSSL_cleanse(decoded, sizeof(decoded));
    if (CRYPTO_memcmp(hash, a->admin_hash, sizeof(hash)) == 0) {
        snprintf(actor, actorlen, "admin");
        return 0;
    }
    return ARCA_E_INVALID;
}
