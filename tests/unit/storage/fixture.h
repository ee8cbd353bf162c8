/*
 * Helpers the storage unit tests share: a temporary directory removed with
 * everything in it, and the digests of a small in-memory content.
 */
#ifndef ARCA_TEST_STORAGE_FIXTURE_H
#define ARCA_TEST_STORAGE_FIXTURE_H

#include "blob.h"

#include <ftw.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fixture_rm_entry(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Makes /tmp/arca-TAG-XXXXXX into dir (at least 64 bytes).  0 or -1. */
static inline int fixture_tmpdir(char *dir, size_t cap, const char *tag)
{
    snprintf(dir, cap, "/tmp/arca-%s-XXXXXX", tag);
    return mkdtemp(dir) ? 0 : -1;
}

static inline void fixture_rmtree(const char *dir)
{
    nftw(dir, fixture_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* SHA-256, SHA-1, MD5 and size of s, and the xxh3 sum of its one block. */
static inline void fixture_digests(const char *s, struct blob_digests *dig, uint64_t *sum)
{
    size_t len = strlen(s);
    memset(dig, 0, sizeof(*dig));
    EVP_Digest(s, len, dig->sha256, NULL, EVP_sha256(), NULL);
    EVP_Digest(s, len, dig->sha1, NULL, EVP_sha1(), NULL);
    EVP_Digest(s, len, dig->md5, NULL, EVP_md5(), NULL);
    dig->size = len;
    *sum = blob_block_sum(s, len);
}

/*
 * The one-block sums of content when event (an event's JSON) names it by its
 * SHA-256, as a replicator computes them on arrival; NULL otherwise.
 */
static inline const struct blob_blocks *fixture_blocks_of(const char *event, const char *content,
                                                          uint64_t *sum,
                                                          struct blob_blocks *blocks)
{
    struct blob_digests dig;
    char hex[65];
    static const char digits[] = "0123456789abcdef";
    fixture_digests(content, &dig, sum);
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[dig.sha256[i] >> 4];
        hex[2 * i + 1] = digits[dig.sha256[i] & 15];
    }
    hex[64] = '\0';
    if (!strstr(event, hex))
        return NULL;
    blocks->count = 1;
    blocks->sums = sum;
    return blocks;
}

#endif
