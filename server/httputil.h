/*
 * Pure HTTP helpers with no I/O: percent-decoding, Range parsing, content
 * types, ETag matching.  Kept apart from the connection code so they can be
 * unit tested directly.
 */
#ifndef ARCA_HTTPUTIL_H
#define ARCA_HTTPUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Percent-decodes len bytes of in into out (at least len+1 bytes), once.
 * Malformed escapes ("%", "%4", "%zz") → ARCA_E_INVALID.  The result may hold
 * any byte, including NUL and '/': *outlen says how long it is, and the
 * coordinate checks reject what they must.  '+' is left as is (path, not form).
 */
int url_decode(const char *in, size_t len, char *out, size_t *outlen);

/*
 * A path made safe to send as a URI path (a Location header, a download_uri):
 * every byte but the unreserved ones, '/' and the sub-delimiters other than
 * ';' is percent-encoded ("a%b c" → "a%25b%20c"), so that decoding it once
 * gives in back.  Returns a malloc'd string, or NULL when out of memory.
 */
char *uri_escape_path(const char *in);

/*
 * Splits a request path ("/a/b%2Fc/d") on '/' and decodes each segment.
 * Writes up to max segments into segs[] (each NUL-terminated, pointing into
 * buf, which must hold at least strlen(path)+max bytes) with lengths in lens[].
 * A segment containing a decoded NUL keeps its true length in lens[].
 * Returns the number of segments, or ARCA_E_INVALID (bad escape) or
 * ARCA_E_TOOBIG (more than max segments).  An empty path or "/" has 0.
 * Empty segments ("a//b", trailing "/") are kept as empty strings so callers
 * can reject them.
 */
int path_split(const char *path, size_t pathlen, char *buf, char **segs, size_t *lens, int max);

enum range_result {
    RANGE_NONE = 0,        /* no Range, or one to ignore (malformed, several ranges): send 200 */
    RANGE_OK = 1,          /* a single satisfiable range in *start, *len */
    RANGE_UNSATISFIABLE = 2, /* 416 */
};

/* Parses a Range header value for a representation of size bytes (RFC 9110 14.2). */
enum range_result range_parse(const char *value, uint64_t size, uint64_t *start, uint64_t *len);

/* The Content-Type for a file path, by its extension; never NULL. */
const char *content_type_for(const char *path);

/*
 * True if an If-None-Match / If-Match style header value lists etag (given
 * with its quotes, e.g. "\"abc\"") or is "*".  Weak "W/" prefixes compare
 * weakly (they match the same opaque tag).
 */
bool etag_list_matches(const char *header, const char *etag);
/* The same with strong comparison (If-Match): a "W/" entry never matches. */
bool etag_list_matches_strong(const char *header, const char *etag);

/* Decodes standard base64 (with padding) into out; returns bytes written or -1. */
int base64_decode(const char *in, size_t len, uint8_t *out, size_t outmax);

/*
 * Finds algorithm alg ("sha-256", "sha", "md5") in an RFC 9530 Content-Digest
 * value and decodes it into out (outlen bytes expected).  Every member must be
 * well formed (key=:base64:, parameters after it ignored), whatever its
 * algorithm.  0 when found, ARCA_E_NOTFOUND when absent, ARCA_E_INVALID when
 * malformed (or alg's value has the wrong length), ARCA_E_CONFLICT when alg
 * is listed twice with different values.
 */
int content_digest_get(const char *header, const char *alg, uint8_t *out, size_t outlen);

/*
 * A strict check of chunked framing (RFC 9112 7.1), run over the same bytes
 * the parser consumes: Debian's http-parser is built non-strict and accepts
 * any two bytes where the CRLF after chunk data belongs, which a smuggling
 * attempt can use.  Start with the state zeroed, right after the header block
 * (a leading LF, the end of the header block, is accepted).
 */
struct chunk_check {
    int state;
    uint64_t remaining;
    unsigned digits;    /* significant hex digits of the size being read (leading zeros are not) */
    unsigned line;      /* bytes of the size line so far (size, extensions): at most 4096 */
    uint64_t declared;  /* the sizes of the chunks before it */
    uint64_t limit;     /* set by the caller: sizes adding up past it are _TOO_BIG (0: none) */
};
enum { CHUNK_CHECK_MORE = 0, CHUNK_CHECK_DONE = 1, CHUNK_CHECK_BAD = -1, CHUNK_CHECK_TOO_BIG = -2 };
/*
 * Consumes n bytes; returns CHUNK_CHECK_MORE, _DONE (message over), _BAD, or
 * _TOO_BIG as soon as a chunk size line takes the body past limit (before
 * that chunk's data is read).
 */
int chunk_check_feed(struct chunk_check *cc, const char *p, size_t n);

/* True if s (len bytes) is an RFC 9110 token (header names, methods). */
bool http_is_token(const char *s, size_t len);

/* True if line (without CR/LF) is "METHOD SP TARGET SP HTTP/1.x". */
bool http_request_line_ok(const char *line, size_t len);

/*
 * A small request body (JSON) collected in memory up to max bytes; past that
 * too_big is set and the rest is dropped (the handler answers 413).
 */
struct body_buf {
    char *data;   /* NUL-terminated once anything arrived */
    size_t len, max;
    bool too_big;
};
void body_buf_append(struct body_buf *b, const char *data, size_t len);
void body_buf_free(struct body_buf *b);

#endif
