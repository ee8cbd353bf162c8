/*
 * Fuzz target for storage/coord.c, the only gate between a request and a key
 * in the index.  The first byte picks the check; the rest is its input (for
 * coord_set, up to four NUL-separated parts: repo, name, version, path).
 *
 * Property: each check agrees with the reference in fuzz_util.h, written from
 * coord.h's contract.  Accepting something the reference rejects (a "." or
 * ".." segment, a NUL, a backslash, a control character, bad UTF-8, an
 * over-long part) is the dangerous direction; rejecting something the contract
 * allows is a bug too, so both abort.  coord_set must also copy exactly what
 * it was given on success and leave the struct zeroed on failure.
 */
#include "arca_err.h"
#include "coord.h"
#include "fuzz_util.h"

static void check(int rc, bool want, const char *why)
{
    FUZZ_ASSERT(rc == 0 || rc == ARCA_E_INVALID);
    if (rc != 0)
        FUZZ_ASSERT(why != NULL && why[0] != '\0');
    if (rc == 0 && !want)
        fprintf(stderr, "coord accepted what its contract rejects\n");
    if (rc != 0 && want)
        fprintf(stderr, "coord rejected what its contract accepts: %s\n", why);
    FUZZ_ASSERT((rc == 0) == want);
}

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return false;
    return true;
}

/* A field of struct coord holds exactly s, NUL-terminated inside the field. */
static bool field_is(const char *field, size_t cap, const char *s)
{
    size_t n = strlen(s);
    return n < cap && memcmp(field, s, n + 1) == 0;
}

static void fuzz_set(const char *data, size_t len)
{
    /* Split at NULs into at most four exact heap strings; a missing part is NULL. */
    char *part[4] = {NULL, NULL, NULL, NULL};
    size_t at = 0;
    for (int i = 0; i < 4 && at <= len; i++) {
        const char *end = i < 3 ? memchr(data + at, '\0', len - at) : NULL;
        size_t n = end ? (size_t)(end - (data + at)) : len - at;
        part[i] = dup_exact(data + at, n);
        at += n + 1;
        if (!end)
            break;
    }
    struct coord *c = malloc(sizeof(*c));
    memset(c, 0xa5, sizeof(*c));
    const char *why = NULL;
    int rc = coord_set(c, part[0], part[1], part[2], part[3], &why);
    bool want = part[0] && part[1] && part[2] && ref_repo(part[0], strlen(part[0])) &&
                ref_segment(part[1], strlen(part[1])) && ref_segment(part[2], strlen(part[2])) &&
                (!part[3] || ref_path(part[3], strlen(part[3])));
    check(rc, want, why);
    if (rc == 0) {
        FUZZ_ASSERT(field_is(c->repo, sizeof(c->repo), part[0]));
        FUZZ_ASSERT(field_is(c->name, sizeof(c->name), part[1]));
        FUZZ_ASSERT(field_is(c->version, sizeof(c->version), part[2]));
        FUZZ_ASSERT(field_is(c->path, sizeof(c->path), part[3] ? part[3] : ""));
    } else {
        FUZZ_ASSERT(all_zero(c, sizeof(*c)));
    }
    free(c);
    for (int i = 0; i < 4; i++)
        free(part[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct fz f = {data + 1, size - 1};
    size_t len;
    char *s = fz_bytes(&f, &len); /* exact size: a read past len is an ASan report */
    const char *why = NULL;
    switch (data[0] % 4) {
    case 0: check(coord_segment_check(s, len, &why), ref_segment(s, len), why); break;
    case 1: check(coord_repo_check(s, len, &why), ref_repo(s, len), why); break;
    case 2: check(coord_path_check(s, len, &why), ref_path(s, len), why); break;
    case 3: fuzz_set(s, len); break;
    }
    free(s);
    return 0;
}
