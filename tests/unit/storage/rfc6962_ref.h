/*
 * An independent RFC 6962 / 9162 implementation for the audit tests: tree
 * hashes straight from the RFC, and proof verification as the RFC gives it,
 * sharing nothing with storage/audit.c.
 */
#ifndef ARCA_TEST_RFC6962_REF_H
#define ARCA_TEST_RFC6962_REF_H

#include "audit.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline void sha(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                size_t clen, uint8_t out[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, a, alen);
    if (blen)
        EVP_DigestUpdate(ctx, b, blen);
    if (clen)
        EVP_DigestUpdate(ctx, c, clen);
    EVP_DigestFinal_ex(ctx, out, NULL);
    EVP_MD_CTX_free(ctx);
}

static inline void leaf_of(const char *bytes, size_t len, uint8_t out[32])
{
    sha("\0", 1, bytes, len, NULL, 0, out);
}

static inline void node_of(const uint8_t l[32], const uint8_t r[32], uint8_t out[32])
{
    sha("\1", 1, l, 32, r, 32, out);
}

/* MTH(D[n]) straight from RFC 6962 section 2.1. */
static inline void mth(uint8_t (*d)[32], uint64_t n, uint8_t out[32])
{
    if (n == 0) {
        sha("", 0, NULL, 0, NULL, 0, out);
        return;
    }
    if (n == 1) {
        memcpy(out, d[0], 32);
        return;
    }
    uint64_t k = 1;
    while (k * 2 < n)
        k *= 2;
    uint8_t l[32], r[32];
    mth(d, k, l);
    mth(d + k, n - k, r);
    node_of(l, r, out);
}

/* RFC 9162 2.1.3.2: verifying an inclusion proof. */
static inline bool inclusion_ok(uint64_t index, uint64_t size, const uint8_t leaf[32],
                         uint8_t (*path)[32], size_t n, const uint8_t root[32])
{
    if (index >= size)
        return false;
    uint64_t fn = index, sn = size - 1;
    uint8_t r[32];
    memcpy(r, leaf, 32);
    for (size_t i = 0; i < n; i++) {
        if (sn == 0)
            return false;
        if ((fn & 1) || fn == sn) {
            node_of(path[i], r, r);
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            node_of(r, path[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(r, root, 32) == 0;
}

/* RFC 9162 2.1.4.2: verifying a consistency proof. */
static inline bool consistency_ok(uint64_t first, uint64_t second, const uint8_t first_root[32],
                           const uint8_t second_root[32], uint8_t (*proof)[32], size_t n)
{
    uint8_t path[AUDIT_PROOF_MAX + 1][32];
    size_t m = 0;
    if (first == second)
        return n == 0 && memcmp(first_root, second_root, 32) == 0;
    if (first == 0 || first > second || n == 0)
        return false;
    if ((first & (first - 1)) == 0)
        memcpy(path[m++], first_root, 32);
    for (size_t i = 0; i < n; i++)
        memcpy(path[m++], proof[i], 32);
    uint64_t fn = first - 1, sn = second - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    uint8_t fr[32], sr[32];
    memcpy(fr, path[0], 32);
    memcpy(sr, path[0], 32);
    for (size_t i = 1; i < m; i++) {
        if (sn == 0)
            return false;
        if ((fn & 1) || fn == sn) {
            node_of(path[i], fr, fr);
            node_of(path[i], sr, sr);
            if (!(fn & 1))
                while (!(fn & 1) && fn != 0) {
                    fn >>= 1;
                    sn >>= 1;
                }
        } else {
            node_of(sr, path[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    return sn == 0 && memcmp(fr, first_root, 32) == 0 && memcmp(sr, second_root, 32) == 0;
}

#endif
