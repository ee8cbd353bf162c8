/*
 * Helpers shared by the fuzz targets: a reader over the fuzzer's bytes, exact
 * heap copies (so AddressSanitizer sees a read one byte past the end), a
 * property assertion that aborts, and reference checks for coordinates.
 *
 * The reference checks are written from the contract in storage/coord.h, not
 * from coord.c, and work differently (they decode UTF-8 to code points where
 * coord.c uses the RFC 3629 byte table), so a mistake in one is not repeated in
 * the other.
 */
#ifndef ARCA_FUZZ_UTIL_H
#define ARCA_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Aborts (a crash for libFuzzer) when a property does not hold. */
#define FUZZ_ASSERT(cond)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz property failed: %s at %s:%d\n", #cond, __FILE__, __LINE__);     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Consumes the fuzzer's bytes front to back; reads past the end give zeros. */
struct fz {
    const uint8_t *p;
    size_t n;
};

static inline uint8_t fz_u8(struct fz *f)
{
    if (f->n == 0)
        return 0;
    f->n--;
    return *f->p++;
}

static inline uint64_t fz_u64(struct fz *f)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | fz_u8(f);
    return v;
}

/* A heap copy of len bytes plus a NUL, in a block of exactly len + 1 bytes. */
static inline char *dup_exact(const void *p, size_t len)
{
    char *s = malloc(len + 1);
    if (!s)
        abort();
    if (len)
        memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

/* Takes up to len bytes from f as an exact heap string; *outlen says how many. */
static inline char *fz_str(struct fz *f, size_t len, size_t *outlen)
{
    if (len > f->n)
        len = f->n;
    char *s = dup_exact(f->p, len);
    f->p += len;
    f->n -= len;
    *outlen = len;
    return s;
}

/*
 * Takes the rest of f as bytes in a heap block of exactly that size, with no
 * NUL after them: for functions given a length, reading one byte past it is
 * then an AddressSanitizer report rather than a read of a terminator.
 */
static inline char *fz_bytes(struct fz *f, size_t *outlen)
{
    char *s = malloc(f->n);
    if (!s && f->n)
        abort();
    if (f->n)
        memcpy(s, f->p, f->n);
    *outlen = f->n;
    f->p += f->n;
    f->n = 0;
    return s;
}

/* Takes the rest of f as an exact heap string. */
static inline char *fz_rest(struct fz *f, size_t *outlen)
{
    return fz_str(f, f->n, outlen);
}

/*
 * Well-formed UTF-8 (RFC 3629) by decoding: the code point of each sequence
 * must need exactly that many bytes, must not be a surrogate, and must not be
 * above U+10FFFF.
 */
static inline bool ref_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint32_t cp = s[i];
        size_t more;
        uint32_t min;
        if (cp < 0x80) {
            i++;
            continue;
        } else if ((cp & 0xe0) == 0xc0) {
            more = 1, cp &= 0x1f, min = 0x80;
        } else if ((cp & 0xf0) == 0xe0) {
            more = 2, cp &= 0x0f, min = 0x800;
        } else if ((cp & 0xf8) == 0xf0) {
            more = 3, cp &= 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i <= more)
            return false;
        for (size_t k = 1; k <= more; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += more + 1;
    }
    return true;
}

/* One name, version or path segment, as coord.h promises to accept it. */
static inline bool ref_segment(const char *s, size_t len)
{
    if (len == 0 || len > 255)
        return false;
    if ((len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '/' || c == '\\' || c == 0 || c < 0x20 || c == 0x7f)
            return false;
    }
    return ref_utf8((const unsigned char *)s, len);
}

/* A repository key: [A-Za-z0-9][A-Za-z0-9._-]*, 1 to 64 bytes. */
static inline bool ref_repo(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-')))
            return false;
    }
    return true;
}

/* A file path: 1 to 1024 bytes, 1 to 32 non-empty '/'-separated segments. */
static inline bool ref_path(const char *s, size_t len)
{
    if (len == 0 || len > 1024)
        return false;
    size_t start = 0, depth = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '/')
            continue;
        if (++depth > 32 || !ref_segment(s + start, i - start))
            return false;
        start = i + 1;
    }
    return true;
}

#endif
