/*
 * Coordinate validation.  These checks stand between a request and a key in
 * the index (and, through the index, names shown to every client), so they
 * accept only what they can prove harmless and say why anything else fails.
 */
#include "coord.h"

#include "arca_err.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/*
 * Returns true when s[0..len) is well-formed UTF-8 as RFC 3629 defines it:
 * shortest form only, no UTF-16 surrogates (U+D800..U+DFFF), nothing above
 * U+10FFFF, no truncated sequence.  Checking the second byte's range per lead
 * byte (the table in RFC 3629 section 4) rejects overlongs and surrogates
 * without decoding the code point.
 */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned char lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
        } else if (c == 0xe0) {
            n = 2;
            lo = 0xa0;
        } else if (c >= 0xe1 && c <= 0xec) {
            n = 2;
        } else if (c == 0xed) {
            n = 2;
            hi = 0x9f;
        } else if (c >= 0xee && c <= 0xef) {
            n = 2;
        } else if (c == 0xf0) {
            n = 3;
            lo = 0x90;
        } else if (c >= 0xf1 && c <= 0xf3) {
            n = 3;
        } else if (c == 0xf4) {
            n = 3;
            hi = 0x8f;
        } else {
            return false; /* continuation byte, C0/C1 overlong lead, or F5..FF */
        }
        if (len - i - 1 < n)
            return false;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
        }
        i += n + 1;
    }
    return true;
}

/*
 * True when valid UTF-8 s[0..len) holds a character that changes how a name
 * looks or where it breaks without being seen: the C1 controls, the
 * bidirectional marks, embeddings, overrides and isolates (the "Trojan Source"
 * characters), and the Unicode line and paragraph separators.
 */
static bool invisible_control(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i + 1 < len; i++) {
        if (u[i] == 0xc2 && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f)
            return true; /* U+0080..U+009F */
        if (u[i] == 0xd8 && u[i + 1] == 0x9c)
            return true; /* U+061C arabic letter mark */
        if (i + 2 < len && u[i] == 0xe2 && u[i + 1] == 0x80 &&
            (u[i + 2] == 0x8e || u[i + 2] == 0x8f || (u[i + 2] >= 0xa8 && u[i + 2] <= 0xae)))
            return true; /* U+200E, U+200F, U+2028..U+202E */
        if (i + 2 < len && u[i] == 0xe2 && u[i + 1] == 0x81 && u[i + 2] >= 0xa6 &&
            u[i + 2] <= 0xa9)
            return true; /* U+2066..U+2069 */
    }
    return false;
}

int coord_segment_check(const char *s, size_t len, const char **why)
{
    const char *reason = NULL;
    if (len == 0) {
        reason = "segment is empty";
        goto out;
    }
    if (len > COORD_SEGMENT_MAX) {
        reason = "segment is longer than 255 bytes";
        goto out;
    }
    if (len == 1 && s[0] == '.') {
        reason = "segment is '.'";
        goto out;
    }
    if (len == 2 && s[0] == '.' && s[1] == '.') {
        reason = "segment is '..'";
        goto out;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '/') {
            reason = "segment contains '/'";
            goto out;
        }
        if (c == '\\') {
            reason = "segment contains a backslash";
            goto out;
        }
        if (c < 0x20 || c == 0x7f) {
            reason = "segment contains a control character";
            goto out;
        }
    }
    if (!utf8_valid((const unsigned char *)s, len))
        reason = "segment is not valid UTF-8";
out:
    if (reason && why)
        *why = reason;
    return reason ? ARCA_E_INVALID : 0;
}

static bool repo_char(char c, bool first)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
        return true;
    return !first && (c == '.' || c == '_' || c == '-');
}

int coord_repo_check(const char *s, size_t len, const char **why)
{
    const char *reason = NULL;
    if (len == 0) {
        reason = "repository key is empty";
        goto out;
    }
    if (len > COORD_REPO_MAX) {
        reason = "repository key is longer than 64 bytes";
        goto out;
    }
    if (!repo_char(s[0], true)) {
        reason = "repository key must start with a letter or digit";
        goto out;
    }
    for (size_t i = 1; i < len; i++) {
        if (!repo_char(s[i], false)) {
            reason = "repository key may contain only letters, digits, '.', '_' and '-'";
            goto out;
        }
    }
out:
    if (reason && why)
        *why = reason;
    return reason ? ARCA_E_INVALID : 0;
}

int coord_path_check(const char *s, size_t len, const char **why)
{
    const char *reason = NULL;
    int rc = 0;
    if (len == 0) {
        reason = "path is empty";
        goto out;
    }
    if (len > COORD_PATH_MAX) {
        reason = "path is longer than 1024 bytes";
        goto out;
    }
    if (s[0] == '/') {
        reason = "path starts with '/'";
        goto out;
    }
    if (s[len - 1] == '/') {
        reason = "path ends with '/'";
        goto out;
    }
    size_t start = 0, depth = 0;
    while (start <= len) {
        const char *slash = memchr(s + start, '/', len - start);
        size_t end = slash ? (size_t)(slash - s) : len;
        if (end == start) {
            reason = "path has an empty segment";
            goto out;
        }
        if (++depth > COORD_PATH_DEPTH) {
            reason = "path has more than 32 segments";
            goto out;
        }
        rc = coord_segment_check(s + start, end - start, &reason);
        if (rc != 0)
            goto out;
        start = end + 1;
    }
out:
    if (reason && why)
        *why = reason;
    return reason ? ARCA_E_INVALID : 0;
}

int coord_set(struct coord *c, const char *repo, const char *name, const char *version,
              const char *path, const char **why)
{
    int rc = ARCA_E_INVALID;
    memset(c, 0, sizeof(*c));
    if (!repo || !name || !version) {
        if (why)
            *why = "coordinate is incomplete";
        goto out;
    }
    size_t rlen = strlen(repo), nlen = strlen(name), vlen = strlen(version);
    size_t plen = path ? strlen(path) : 0;
    if ((rc = coord_repo_check(repo, rlen, why)) != 0)
        goto out;
    if ((rc = coord_segment_check(name, nlen, why)) != 0)
        goto out;
    if ((rc = coord_segment_check(version, vlen, why)) != 0)
        goto out;
    if (path && (rc = coord_path_check(path, plen, why)) != 0)
        goto out;
    /* The checks above bound every length by its field's size. */
    memcpy(c->repo, repo, rlen + 1);
    memcpy(c->name, name, nlen + 1);
    memcpy(c->version, version, vlen + 1);
    if (path)
        memcpy(c->path, path, plen + 1);
    rc = 0;
out:
    if (rc != 0)
        memset(c, 0, sizeof(*c));
    return rc;
}

int coord_new_name_check(const struct coord *c, const char **why)
{
    const char *parts[] = {c->name, c->version, c->path};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        if (invisible_control(parts[i], strlen(parts[i]))) {
            if (why)
                *why = "a segment contains a C1 control, bidirectional-text control or line "
                       "separator character (U+0080-U+009F, U+061C, U+200E-U+200F, "
                       "U+2028-U+202E, U+2066-U+2069)";
            return ARCA_E_INVALID;
        }
    }
    return 0;
}
