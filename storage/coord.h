/*
 * Artifact coordinates: repository / name / version / path.
 *
 * Every part arrives already percent-decoded exactly once (server/ splits the
 * request target on '/' first, then decodes each segment).  These checks are
 * the only gate between a request and a key in the index, so they are strict:
 *   - no empty segment, no "." or "..", no '/' inside a single segment
 *     (the path is the only part made of several segments),
 *   - no control characters (0x00-0x1f, 0x7f), no backslash,
 *   - valid UTF-8 (overlong forms, surrogates and > U+10FFFF rejected),
 *   - length limits below.
 * The repository key is further limited to [A-Za-z0-9][A-Za-z0-9._-]*.
 */
#ifndef ARCA_COORD_H
#define ARCA_COORD_H

#include <stddef.h>

#define COORD_REPO_MAX 64      /* bytes */
#define COORD_SEGMENT_MAX 255  /* bytes, name, version, and each path segment */
#define COORD_PATH_MAX 1024    /* bytes, the whole file path */
#define COORD_PATH_DEPTH 32    /* segments in a file path */

struct coord {
    char repo[COORD_REPO_MAX + 1];
    char name[COORD_SEGMENT_MAX + 1];
    char version[COORD_SEGMENT_MAX + 1];
    char path[COORD_PATH_MAX + 1];
};

/*
 * Checks one segment (name, version, or one segment of a path) of len bytes.
 * Returns 0, or ARCA_E_INVALID with *why set to a static explanation.
 */
int coord_segment_check(const char *s, size_t len, const char **why);

/* Checks a repository key; 0 or ARCA_E_INVALID with *why. */
int coord_repo_check(const char *s, size_t len, const char **why);

/* Checks a '/'-separated file path (no leading or trailing '/'); 0 or ARCA_E_INVALID with *why. */
int coord_path_check(const char *s, size_t len, const char **why);

/*
 * Checks and copies all four parts into c (path may be NULL for a version-level
 * coordinate, leaving c->path empty).  0 or ARCA_E_INVALID with *why; on error
 * c is left zeroed.
 */
int coord_set(struct coord *c, const char *repo, const char *name, const char *version,
              const char *path, const char **why);

/*
 * The stricter rule for a name a client creates (an upload), on top of
 * coord_set's: no C1 control, bidirectional-text control or Unicode line
 * separator in name, version or path.  Reads, and events from other centres,
 * keep coord_set's rule, so names stored before this rule stay reachable and
 * an older peer's event still applies.  0 or ARCA_E_INVALID with *why.
 */
int coord_new_name_check(const struct coord *c, const char **why);

#endif
