#include "httputil.h"

#include "arca_err.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int hexdig(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int url_decode(const char *in, size_t len, char *out, size_t *outlen)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] != '%') {
            out[o++] = in[i];
            continue;
        }
        if (i + 2 >= len)
            return ARCA_E_INVALID; /* a '%' needs two hex digits after it */
        int hi = hexdig((unsigned char)in[i + 1]), lo = hexdig((unsigned char)in[i + 2]);
        if (hi < 0 || lo < 0)
            return ARCA_E_INVALID;
        out[o++] = (char)(hi << 4 | lo);
        i += 2;
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

/* Bytes a path keeps as they are: RFC 3986 unreserved, '/', and a few sub-delims. */
static bool path_keeps(unsigned char ch)
{
    return ch < 0x80 && ch != '\0' && (isalnum(ch) || strchr("-._~/!$&'()*+,=:@", ch));
}

char *uri_escape_path(const char *in)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++)
        n += path_keeps(*p) ? 1 : 3;
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (path_keeps(*p)) {
            *o++ = (char)*p;
        } else {
            *o++ = '%';
            *o++ = hex[*p >> 4];
            *o++ = hex[*p & 15];
        }
    }
    *o = '\0';
    return out;
}

int path_split(const char *path, size_t pathlen, char *buf, char **segs, size_t *lens, int max)
{
    int n = 0;
    size_t i = 0;
    if (pathlen > 0 && path[0] == '/')
        i = 1;
    if (i >= pathlen)
        return 0;
    char *o = buf;
    while (i <= pathlen) {
        size_t j = i;
        while (j < pathlen && path[j] != '/')
            j++;
        if (n == max)
            return ARCA_E_TOOBIG;
        size_t dl;
        if (url_decode(path + i, j - i, o, &dl) != 0)
            return ARCA_E_INVALID;
        segs[n] = o;
        lens[n] = dl;
        n++;
        o += dl + 1;
        if (j == pathlen)
            break;
        i = j + 1;
        if (i == pathlen) { /* trailing '/': an empty last segment */
            if (n == max)
                return ARCA_E_TOOBIG;
            *o = '\0';
            segs[n] = o;
            lens[n] = 0;
            n++;
            break;
        }
    }
    return n;
}

static int parse_u64(const char **p, uint64_t *out)
{
    const char *s = *p;
    if (!isdigit((unsigned char)*s))
        return -1;
    uint64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
        s++;
    }
    *p = s;
    *out = v;
    return 0;
}

enum range_result range_parse(const char *value, uint64_t size, uint64_t *start, uint64_t *len)
{
    const char *p = value;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "bytes", 5) != 0)
        return RANGE_NONE;
    p += 5;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p++ != '=')
        return RANGE_NONE;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strchr(p, ','))
        return RANGE_NONE; /* several ranges: we answer with the whole representation */
    uint64_t a = 0, b = 0;
    bool has_a = false, has_b = false;
    if (*p != '-') {
        if (parse_u64(&p, &a) != 0)
            return RANGE_NONE;
        has_a = true;
    }
    if (*p++ != '-')
        return RANGE_NONE;
    if (isdigit((unsigned char)*p)) {
        if (parse_u64(&p, &b) != 0)
            return RANGE_NONE;
        has_b = true;
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '\0' || (!has_a && !has_b))
        return RANGE_NONE;
    if (!has_a) { /* suffix: the last b bytes */
        if (b == 0)
            return RANGE_UNSATISFIABLE;
        if (size == 0)
            return RANGE_NONE; /* satisfiable (RFC 9110 14.1.1), but no 206 can say so: 200 */
        if (b > size)
            b = size;
        *start = size - b;
        *len = b;
        return RANGE_OK;
    }
    if (has_b && b < a)
        return RANGE_NONE; /* invalid range-spec: ignore the header */
    if (a >= size)
        return RANGE_UNSATISFIABLE;
    if (!has_b || b >= size)
        b = size - 1;
    *start = a;
    *len = b - a + 1;
    return RANGE_OK;
}

static const struct {
    const char *ext;
    const char *type;
} types[] = {
    {".tar.gz", "application/gzip"},
    {".tgz", "application/gzip"},
    {".gz", "application/gzip"},
    {".jar", "application/java-archive"},
    {".war", "application/java-archive"},
    {".ear", "application/java-archive"},
    {".pom", "application/xml"},
    {".xml", "application/xml"},
    {".json", "application/json"},
    {".txt", "text/plain; charset=utf-8"},
    {".log", "text/plain; charset=utf-8"},
    {".md", "text/markdown; charset=utf-8"},
    {".html", "text/html; charset=utf-8"},
    {".zip", "application/zip"},
    {".tar", "application/x-tar"},
    {".bz2", "application/x-bzip2"},
    {".xz", "application/x-xz"},
    {".zst", "application/zstd"},
    {".deb", "application/vnd.debian.binary-package"},
    {".rpm", "application/x-rpm"},
    {".whl", "application/zip"},
    {".pdf", "application/pdf"},
    {".png", "image/png"},
    {".svg", "image/svg+xml"},
    {".sha256", "text/plain; charset=utf-8"},
    {".sha1", "text/plain; charset=utf-8"},
    {".md5", "text/plain; charset=utf-8"},
    {".asc", "text/plain; charset=utf-8"},
};

const char *content_type_for(const char *path)
{
    size_t n = strlen(path);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        size_t e = strlen(types[i].ext);
        if (n > e && (size_t)(path + n - base) > e &&
            strcasecmp(path + n - e, types[i].ext) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

static bool etag_list_match(const char *header, const char *etag, bool strong)
{
    const char *p = header;
    size_t elen = strlen(etag);
    while (*p) {
        bool weak = false;
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/') {
            p += 2;
            weak = true;
        }
        const char *end = p;
        if (*end == '"') {
            end = strchr(p + 1, '"');
            if (!end)
                return false;
            end++;
        } else {
            while (*end && *end != ',' && *end != ' ')
                end++;
        }
        if ((size_t)(end - p) == elen && memcmp(p, etag, elen) == 0 && !(strong && weak))
            return true;
        p = end;
    }
    return false;
}

bool etag_list_matches(const char *header, const char *etag)
{
    return etag_list_match(header, etag, false);
}

bool etag_list_matches_strong(const char *header, const char *etag)
{
    return etag_list_match(header, etag, true);
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

int base64_decode(const char *in, size_t len, uint8_t *out, size_t outmax)
{
    if (len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
            } else if (pad) {
                return -1;
            } else if ((v[k] = b64val((unsigned char)in[i + k])) < 0) {
                return -1;
            }
        }
        uint32_t triple = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                          (uint32_t)v[3];
        for (int k = 0; k < 3 - pad; k++) {
            if (o >= outmax)
                return -1;
            out[o++] = (uint8_t)(triple >> (16 - 8 * k));
        }
    }
    return (int)o;
}

int content_digest_get(const char *header, const char *alg, uint8_t *out, size_t outlen)
{
    size_t alen = strlen(alg);
    const char *p = header;
    bool found = false;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        /* One member: key "=" ":" base64 ":" *( ";" parameter ), RFC 8941 style. */
        const char *key = p;
        while (isalnum((unsigned char)*p) || *p == '-' || *p == '_' || *p == '.' || *p == '*')
            p++;
        if (p == key || p[0] != '=' || p[1] != ':')
            return ARCA_E_INVALID;
        size_t klen = (size_t)(p - key);
        const char *v = p + 2, *close = strchr(v, ':');
        if (!close)
            return ARCA_E_INVALID;
        p = close + 1;
        while (*p == ';') { /* parameters are allowed and ignored (a quoted value too) */
            p++;
            while (*p && *p != ',' && *p != ';') {
                if (*p++ != '"')
                    continue;
                while (*p && *p != '"')
                    p += p[0] == '\\' && p[1] ? 2 : 1;
                if (*p != '"')
                    return ARCA_E_INVALID;
                p++;
            }
        }
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != '\0' && *p != ',')
            return ARCA_E_INVALID;
        for (const char *q = v; q < close; q++)
            if (!isalnum((unsigned char)*q) && *q != '+' && *q != '/' && *q != '=')
                return ARCA_E_INVALID;
        if (klen != alen || strncasecmp(key, alg, alen) != 0)
            continue; /* another algorithm: its value is not decoded (it may be long) */
        uint8_t tmp[64];
        int n = base64_decode(v, (size_t)(close - v), tmp, sizeof(tmp));
        if (n != (int)outlen)
            return ARCA_E_INVALID;
        if (found && memcmp(out, tmp, outlen) != 0)
            return ARCA_E_CONFLICT; /* the same algorithm twice, with two values */
        memcpy(out, tmp, outlen);
        found = true;
    }
    return found ? 0 : ARCA_E_NOTFOUND;
}

enum {
    CC_START,      /* the header block's final LF may come first */
    CC_SIZE,       /* hex digits */
    CC_EXT,        /* ";ext" up to CR */
    CC_SIZE_LF,
    CC_DATA,
    CC_DATA_CR,
    CC_DATA_LF,
    CC_TRAILER,    /* at the start of a trailer line */
    CC_TRAILER_LINE,
    CC_TRAILER_LF, /* after the CR of a trailer line */
    CC_END_LF,     /* after the CR of the empty line */
    CC_DONE,
};

int chunk_check_feed(struct chunk_check *cc, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        switch (cc->state) {
        case CC_START:
            cc->state = CC_SIZE;
            if (ch == '\n')
                break;
            /* fall through */
        case CC_SIZE:
            /* Every byte of the size line before this one was a hex digit. */
            if (++cc->line > 4096)
                return CHUNK_CHECK_BAD; /* zeros without end */
            if (hexdig((unsigned char)ch) >= 0) {
                if ((cc->remaining || ch != '0') && ++cc->digits > 15)
                    return CHUNK_CHECK_BAD; /* http-parser also refuses sizes this large */
                cc->remaining = cc->remaining * 16 + (uint64_t)hexdig((unsigned char)ch);
                /* declared never passes limit: the line that would have said so stopped */
                if (cc->limit && cc->remaining > cc->limit - cc->declared)
                    return CHUNK_CHECK_TOO_BIG;
            } else if (cc->line > 1 && (ch == ';' || ch == ' ' || ch == '\t')) {
                cc->state = CC_EXT;
            } else if (cc->line > 1 && ch == '\r') {
                cc->state = CC_SIZE_LF;
            } else {
                return CHUNK_CHECK_BAD;
            }
            break;
        case CC_EXT:
            if (++cc->line > 4096)
                return CHUNK_CHECK_BAD;
            if (ch == '\r')
                cc->state = CC_SIZE_LF;
            else if (ch == '\n' || ((unsigned char)ch < 0x20 && ch != '\t'))
                return CHUNK_CHECK_BAD;
            break;
        case CC_SIZE_LF:
            if (ch != '\n')
                return CHUNK_CHECK_BAD;
            cc->digits = cc->line = 0;
            cc->declared += cc->remaining;
            cc->state = cc->remaining ? CC_DATA : CC_TRAILER;
            break;
        case CC_DATA: {
            uint64_t take = n - i;
            if (take > cc->remaining)
                take = cc->remaining;
            cc->remaining -= take;
            i += take - 1;
            if (cc->remaining == 0)
                cc->state = CC_DATA_CR;
            break;
        }
        case CC_DATA_CR:
            if (ch != '\r')
                return CHUNK_CHECK_BAD;
            cc->state = CC_DATA_LF;
            break;
        case CC_DATA_LF:
            if (ch != '\n')
                return CHUNK_CHECK_BAD;
            cc->state = CC_SIZE;
            break;
        case CC_TRAILER:
            if (ch == '\r')
                cc->state = CC_END_LF;
            else if (ch == '\n')
                return CHUNK_CHECK_BAD;
            else
                cc->state = CC_TRAILER_LINE;
            break;
        case CC_TRAILER_LINE:
            if (ch == '\r')
                cc->state = CC_TRAILER_LF;
            else if (ch == '\n')
                return CHUNK_CHECK_BAD;
            break;
        case CC_TRAILER_LF:
            if (ch != '\n')
                return CHUNK_CHECK_BAD;
            cc->state = CC_TRAILER;
            break;
        case CC_END_LF:
            if (ch != '\n')
                return CHUNK_CHECK_BAD;
            cc->state = CC_DONE;
            return i + 1 == n ? CHUNK_CHECK_DONE : CHUNK_CHECK_BAD;
        default:
            return CHUNK_CHECK_BAD; /* bytes after the end belong to the next request */
        }
    }
    return cc->state == CC_DONE ? CHUNK_CHECK_DONE : CHUNK_CHECK_MORE;
}

bool http_is_token(const char *s, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || strchr("!#$%&'*+-.^_`|~", c)) || c == 0)
            return false;
    }
    return true;
}

bool http_request_line_ok(const char *line, size_t len)
{
    const char *sp1 = memchr(line, ' ', len);
    if (!sp1 || !http_is_token(line, (size_t)(sp1 - line)))
        return false;
    const char *rest = sp1 + 1;
    size_t rlen = len - (size_t)(rest - line);
    const char *sp2 = memchr(rest, ' ', rlen);
    if (!sp2 || sp2 == rest)
        return false;
    const char *ver = sp2 + 1;
    size_t vlen = len - (size_t)(ver - line);
    return vlen == 8 && memcmp(ver, "HTTP/1.", 7) == 0 && (ver[7] == '0' || ver[7] == '1');
}

void body_buf_append(struct body_buf *b, const char *data, size_t len)
{
    if (b->too_big || len > b->max - b->len) {
        b->too_big = true;
        return;
    }
    char *nb = realloc(b->data, b->len + len + 1);
    if (!nb) {
        b->too_big = true;
        return;
    }
    b->data = nb;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void body_buf_free(struct body_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
}
