/*
 * Fuzz target for server/httputil.c.  The first byte picks the function; the
 * rest is its input.  Strings are passed in heap blocks of exactly their size
 * so that AddressSanitizer catches any read past them.  Besides memory safety,
 * each function is checked against a property of its contract in httputil.h:
 * a small reference implementation where one is short enough to trust
 * (percent-decoding, path splitting, base64, tokens, the request line), bounds
 * on the results otherwise, and for chunk_check_feed that the verdict does not
 * depend on how the bytes are split between calls.
 */
#include "arca_err.h"
#include "fuzz_util.h"
#include "httputil.h"

#include <ctype.h>

static int ref_hex(unsigned char c)
{
    static const char digits[] = "0123456789abcdef";
    const char *p = c ? strchr(digits, tolower(c)) : NULL;
    return p ? (int)(p - digits) : -1;
}

/* Percent-decoding from its contract: "%" must be followed by two hex digits. */
static int ref_url_decode(const char *in, size_t len, char *out, size_t *outlen)
{
    size_t o = 0, i = 0;
    while (i < len) {
        if (in[i] != '%') {
            out[o++] = in[i++];
            continue;
        }
        if (len - i < 3 || ref_hex((unsigned char)in[i + 1]) < 0 ||
            ref_hex((unsigned char)in[i + 2]) < 0)
            return -1;
        out[o++] =
            (char)(ref_hex((unsigned char)in[i + 1]) * 16 + ref_hex((unsigned char)in[i + 2]));
        i += 3;
    }
    *outlen = o;
    return 0;
}

static void fuzz_url_decode(struct fz *f)
{
    size_t len, outlen = 0, reflen = 0;
    char *in = fz_bytes(f, &len);
    char *out = malloc(len + 1), *ref = malloc(len + 1);
    int rc = url_decode(in, len, out, &outlen);
    int rrc = ref_url_decode(in, len, ref, &reflen);
    FUZZ_ASSERT(rc == 0 || rc == ARCA_E_INVALID);
    FUZZ_ASSERT((rc == 0) == (rrc == 0));
    if (rc == 0) {
        FUZZ_ASSERT(outlen == reflen && outlen <= len);
        FUZZ_ASSERT(memcmp(out, ref, outlen) == 0 && out[outlen] == '\0');
        if (!memchr(in, '%', len))
            FUZZ_ASSERT(outlen == len && memcmp(out, in, len) == 0);
    }
    free(in);
    free(out);
    free(ref);
}

/*
 * path_split from its contract: drop one leading '/', split the rest on '/'
 * (keeping empty segments), decode each in turn; needing segment number max+1
 * is ARCA_E_TOOBIG, a bad escape ARCA_E_INVALID, whichever comes first.
 */
static int ref_path_split(const char *path, size_t len, char *dec, size_t *offs, size_t *lens,
                          int max)
{
    if (len > 0 && path[0] == '/')
        path++, len--;
    if (len == 0)
        return 0;
    int n = 0;
    size_t start = 0, o = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && path[i] != '/')
            continue;
        if (n == max)
            return ARCA_E_TOOBIG;
        if (ref_url_decode(path + start, i - start, dec + o, &lens[n]) != 0)
            return ARCA_E_INVALID;
        offs[n++] = o;
        o += lens[n - 1];
        start = i + 1;
    }
    return n;
}

static void fuzz_path_split(struct fz *f)
{
    int max = 1 + fz_u8(f) % 40;
    size_t len;
    char *path = fz_rest(f, &len);
    len = strlen(path); /* the contract sizes buf by strlen(path) */
    size_t bufsize = len + (size_t)max;
    char *buf = malloc(bufsize);
    char **segs = malloc(sizeof(*segs) * (size_t)max);
    size_t *lens = malloc(sizeof(*lens) * (size_t)max);
    char *dec = malloc(len + 1);
    size_t *roffs = malloc(sizeof(*roffs) * (size_t)max);
    size_t *rlens = malloc(sizeof(*rlens) * (size_t)max);
    int n = path_split(path, len, buf, segs, lens, max);
    int want = ref_path_split(path, len, dec, roffs, rlens, max);
    FUZZ_ASSERT(n == want);
    for (int k = 0; k < n; k++) {
        FUZZ_ASSERT(lens[k] == rlens[k] && memcmp(segs[k], dec + roffs[k], lens[k]) == 0);
        FUZZ_ASSERT(segs[k] >= buf && segs[k] + lens[k] < buf + bufsize &&
                    segs[k][lens[k]] == '\0');
        /* Segments are laid out in order (h_artifact.c re-joins them through segs[i][-1]). */
        if (k > 0)
            FUZZ_ASSERT(segs[k] == segs[k - 1] + lens[k - 1] + 1);
    }
    free(path);
    free(buf);
    free(segs);
    free(lens);
    free(dec);
    free(roffs);
    free(rlens);
}

static void fuzz_range(struct fz *f)
{
    uint8_t how = fz_u8(f);
    uint64_t size = (how & 1) ? fz_u64(f) : fz_u8(f); /* small sizes reach the edge cases */
    size_t len;
    char *v = fz_rest(f, &len);
    uint64_t start = 0, rlen = 0;
    enum range_result r = range_parse(v, size, &start, &rlen);
    FUZZ_ASSERT(r == RANGE_NONE || r == RANGE_OK || r == RANGE_UNSATISFIABLE);
    if (r == RANGE_OK) {
        FUZZ_ASSERT(rlen >= 1 && start < size && rlen <= size - start);
    }
    if (r != RANGE_NONE) {
        FUZZ_ASSERT(strchr(v, '=') && !strchr(v, ','));
    }
    free(v);
}

static void fuzz_content_type(struct fz *f)
{
    size_t len;
    char *path = fz_rest(f, &len);
    const char *t = content_type_for(path);
    FUZZ_ASSERT(t && strchr(t, '/'));
    for (char *p = path; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    FUZZ_ASSERT(content_type_for(path) == t); /* extensions compare without case */
    free(path);
}

static void fuzz_etag(struct fz *f)
{
    size_t len;
    char *all = fz_rest(f, &len);
    size_t hlen = strlen(all);
    char *header = dup_exact(all, hlen);
    char *etag = dup_exact(all + (hlen < len ? hlen + 1 : len), hlen < len ? len - hlen - 1 : 0);
    bool m = etag_list_matches(header, etag);
    (void)m;
    size_t elen = strlen(etag);
    /* A quoted tag is always found in a list holding just it, strong or weak. */
    if (elen >= 2 && etag[0] == '"' && etag[elen - 1] == '"' && !memchr(etag + 1, '"', elen - 2)) {
        FUZZ_ASSERT(etag_list_matches(etag, etag));
        char *weak = malloc(elen + 3);
        memcpy(weak, "W/", 2);
        memcpy(weak + 2, etag, elen + 1);
        FUZZ_ASSERT(etag_list_matches(weak, etag));
        free(weak);
    }
    FUZZ_ASSERT(etag_list_matches("*", etag));
    free(all);
    free(header);
    free(etag);
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int ref_b64val(unsigned char c)
{
    const char *p = c ? strchr(b64chars, c) : NULL;
    return p ? (int)(p - b64chars) : -1;
}

/* Base64 from RFC 4648: groups of four, '=' only as "xx==" or "xxx=" at the very end. */
static int ref_base64(const char *in, size_t len, uint8_t *out)
{
    if (len % 4)
        return -1;
    int o = 0;
    for (size_t i = 0; i < len; i += 4) {
        bool last = i + 4 == len;
        int pad = (last && in[i + 3] == '=') + (last && in[i + 3] == '=' && in[i + 2] == '=');
        uint32_t v = 0;
        for (int k = 0; k < 4 - pad; k++) {
            int d = ref_b64val((unsigned char)in[i + k]);
            if (d < 0)
                return -1;
            v |= (uint32_t)d << (18 - 6 * k);
        }
        for (int k = 0; k < 3 - pad; k++)
            out[o++] = (uint8_t)(v >> (16 - 8 * k));
    }
    return o;
}

static void b64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= in[i + 2];
        out[o++] = b64chars[v >> 18 & 63];
        out[o++] = b64chars[v >> 12 & 63];
        out[o++] = i + 1 < len ? b64chars[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? b64chars[v & 63] : '=';
    }
    out[o] = '\0';
}

static void fuzz_base64(struct fz *f)
{
    size_t outmax = fz_u8(f);
    size_t len;
    char *in = fz_bytes(f, &len);
    uint8_t *out = malloc(outmax ? outmax : 1), *ref = malloc(len / 4 * 3 + 1);
    int n = base64_decode(in, len, out, outmax);
    int want = ref_base64(in, len, ref);
    if (want > (int)outmax)
        want = -1;
    FUZZ_ASSERT(n == want);
    if (n > 0)
        FUZZ_ASSERT(memcmp(out, ref, (size_t)n) == 0);
    free(in);
    free(out);
    free(ref);
}

static const char *const algs[] = {"sha-256", "sha", "md5", "sha-512"};

static void fuzz_content_digest(struct fz *f)
{
    uint8_t sel = fz_u8(f);
    const char *alg = algs[sel % 4];
    static const size_t outlens[] = {32, 20, 16, 64};
    size_t outlen = (sel >> 2) & 1 ? outlens[(sel >> 3) % 4] : (size_t)(sel >> 3) * 3;
    size_t len;
    if ((sel >> 7) == 0) {
        /* Any header. */
        char *header = fz_rest(f, &len);
        uint8_t *out = malloc(outlen ? outlen : 1);
        int rc = content_digest_get(header, alg, out, outlen);
        FUZZ_ASSERT(rc == 0 || rc == ARCA_E_NOTFOUND || rc == ARCA_E_INVALID);
        if (rc == 0)
            FUZZ_ASSERT(strstr(header, "=:")); /* the value starts right after '=' with ':' */
        free(header);
        free(out);
    } else {
        /* A well-formed header for the fuzzer's bytes always gives those bytes back. */
        char *digest = fz_str(f, 64, &len);
        char *enc = malloc((len + 2) / 3 * 4 + 1);
        b64_encode((const uint8_t *)digest, len, enc);
        size_t hlen = strlen(alg) + strlen(enc) + 4;
        char *header = malloc(hlen);
        snprintf(header, hlen, "%s=:%s:", alg, enc);
        uint8_t *out = malloc(len ? len : 1);
        FUZZ_ASSERT(content_digest_get(header, alg, out, len) == 0);
        FUZZ_ASSERT(memcmp(out, digest, len) == 0);
        free(digest);
        free(enc);
        free(header);
        free(out);
    }
}

/* Feeds like conn.c: stop at the first BAD; the verdict is the last call's answer. */
static int feed_split(struct chunk_check *cc, const char *p, size_t n, const size_t *cuts,
                      int ncuts)
{
    size_t at = 0;
    int r = CHUNK_CHECK_MORE;
    for (int i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        if (end < at)
            continue;
        r = chunk_check_feed(cc, p + at, end - at);
        if (r == CHUNK_CHECK_BAD)
            return r;
        at = end;
    }
    return r;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static void fuzz_chunks(struct fz *f)
{
    int ncuts = fz_u8(f) % 8;
    uint8_t raw[8];
    for (int i = 0; i < ncuts; i++)
        raw[i] = fz_u8(f);
    size_t len;
    char *body = fz_bytes(f, &len);
    size_t cuts[8];
    for (int i = 0; i < ncuts; i++)
        cuts[i] = raw[i] % (len + 1);
    qsort(cuts, (size_t)ncuts, sizeof(cuts[0]), cmp_size);

    struct chunk_check whole = {0}, split = {0}, bytewise = {0};
    int rw = chunk_check_feed(&whole, body, len);
    int rs = feed_split(&split, body, len, cuts, ncuts);
    int rb = CHUNK_CHECK_MORE;
    for (size_t i = 0; i < len && rb != CHUNK_CHECK_BAD; i++)
        rb = chunk_check_feed(&bytewise, body + i, 1);
    FUZZ_ASSERT(rw == CHUNK_CHECK_MORE || rw == CHUNK_CHECK_DONE || rw == CHUNK_CHECK_BAD);
    FUZZ_ASSERT(rw == rs && rw == rb);
    if (rw != CHUNK_CHECK_BAD) {
        /* Not only the verdict: the state reached is the same however the bytes came. */
        FUZZ_ASSERT(whole.state == split.state && whole.remaining == split.remaining &&
                    whole.digits == split.digits);
        FUZZ_ASSERT(whole.state == bytewise.state && whole.remaining == bytewise.remaining &&
                    whole.digits == bytewise.digits);
    }
    free(body);
}

static bool ref_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

static bool ref_token(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!ref_tchar((unsigned char)s[i]))
            return false;
    return len > 0;
}

static void fuzz_token(struct fz *f)
{
    size_t len;
    char *s = fz_bytes(f, &len);
    FUZZ_ASSERT(http_is_token(s, len) == ref_token(s, len));
    free(s);
}

/* "METHOD SP TARGET SP HTTP/1.x", from the end: the version, then the first space. */
static bool ref_request_line(const char *l, size_t len)
{
    if (len < 9 + 2 || memcmp(l + len - 9, " HTTP/1.", 8) != 0 ||
        (l[len - 1] != '0' && l[len - 1] != '1'))
        return false;
    size_t head = len - 9; /* METHOD SP TARGET */
    const char *sp = memchr(l, ' ', head);
    if (!sp || !ref_token(l, (size_t)(sp - l)))
        return false;
    size_t tlen = head - (size_t)(sp - l) - 1;
    return tlen > 0 && !memchr(sp + 1, ' ', tlen);
}

static void fuzz_request_line(struct fz *f)
{
    size_t len;
    char *l = fz_bytes(f, &len);
    FUZZ_ASSERT(http_request_line_ok(l, len) == ref_request_line(l, len));
    free(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    struct fz f = {data + 1, size - 1};
    switch (data[0] % 10) {
    case 0: fuzz_url_decode(&f); break;
    case 1: fuzz_path_split(&f); break;
    case 2: fuzz_range(&f); break;
    case 3: fuzz_content_type(&f); break;
    case 4: fuzz_etag(&f); break;
    case 5: fuzz_base64(&f); break;
    case 6: fuzz_content_digest(&f); break;
    case 7: fuzz_chunks(&f); break;
    case 8: fuzz_token(&f); break;
    case 9: fuzz_request_line(&f); break;
    }
    return 0;
}
