/*
 * The repository model over the index (RocksDB) and the event log.
 *
 * Every mutation is an event {origin centre, origin seq, HLC time, actor,
 * action, subject, details}.  One function (event.c: apply) validates an event
 * against the current state and commits, in a single synced RocksDB write
 * batch, both the index changes and the event itself, whose record carries
 * the SHA-256 hash chain (hash = SHA-256(prev hash || canonical event bytes)).
 * The operations below build an event and hand it to apply; nothing else
 * writes the index.
 *
 * Column families: meta, artifacts, versions, vtime, blobs, sha1, events.
 * The data layout is described in docs/ARCHITECTURE.md.
 *
 * Thread safety: a repo_db may be used from any number of threads.  Applies
 * are serialized internally, so check-then-write decisions (immutability,
 * conflicts) are atomic.
 */
#ifndef ARCA_REPO_H
#define ARCA_REPO_H

#include "blob.h"
#include "coord.h"
#include "stages.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct repo_db repo_db;

/* Who asked for a mutation, for the event and the audit log.  Borrowed strings. */
struct actor_ctx {
    const char *actor;        /* e.g. "admin", "token:ci"; never a secret */
    const char *remote_addr;  /* "127.0.0.1:51234" or NULL */
    const char *request_id;   /* the X-Request-Id, or NULL */
};

struct artifact {
    struct coord coord;
    struct blob_digests dig;
    uint64_t created_ms;      /* wall-clock ms of the upload */
    char created_by[128];
    uint64_t event_seq;       /* the local event that created it */
    uint64_t hlc;             /* its event's hybrid-logical-clock time (0 in old records) */
    char origin[65];          /* the centre that wrote it ("" in old records) */
    bool revoked;             /* its version is revoked: a copy of the version's state, so
                                 that a download needs one index lookup, not two */
};

struct repo_stats {
    uint64_t blob_count;      /* distinct contents stored */
    uint64_t stored_bytes;    /* sum of distinct blob sizes */
    uint64_t artifact_count;  /* coordinates */
    uint64_t logical_bytes;   /* sum of sizes over coordinates */
    uint64_t event_count;
};

/* Opens (creating) the index in dir for centre centre_id.  0, ARCA_E_DB (logged). */
int repo_db_open(const char *dir, const char *centre_id, repo_db **out);
/*
 * Opens an index read-only, alongside a running server (for `arcad verify`);
 * mutations then fail with ARCA_E_DB.
 */
int repo_db_open_readonly(const char *dir, repo_db **out);
/* Closes the index; NULL is a no-op. */
void repo_db_free(repo_db *db);

/*
 * Records that coordinate c holds the blob dig (with its block sums).  The
 * blob must already be committed to the blob store.
 *   0, *created = 1: stored now; out describes it.
 *   0, *created = 0: the coordinate already held exactly this content (a safe
 *                    retry); out describes the stored artifact.
 *   ARCA_E_CONFLICT: it holds different content; out describes what is stored.
 *   ARCA_E_DB: the index failed (logged).
 * blocks may be NULL when dig names a blob the index already knows (a
 * checksum deploy).
 */
int repo_put_artifact(repo_db *db, const struct coord *c, const struct blob_digests *dig,
                      const struct blob_blocks *blocks, const struct actor_ctx *who,
                      struct artifact *out, int *created);

/* Looks up a file coordinate.  0, ARCA_E_NOTFOUND, ARCA_E_DB. */
int repo_get_artifact(repo_db *db, const struct coord *c, struct artifact *out);

/*
 * Looks up a stored blob by SHA-256.  blocks may be NULL; if not, its sums are
 * malloc'd and owned by the caller (blob_blocks_cleanup).  0, ARCA_E_NOTFOUND, ARCA_E_DB.
 */
int repo_get_blob(repo_db *db, const uint8_t sha256[32], struct blob_digests *dig,
                  struct blob_blocks *blocks);

/* Finds the SHA-256 of a stored blob by its SHA-1.  0, ARCA_E_NOTFOUND, ARCA_E_DB. */
int repo_find_sha1(repo_db *db, const uint8_t sha1[20], uint8_t sha256_out[32]);

/*
 * Paginated listings.  Each calls cb once per item, in order, for at most
 * limit items after the opaque cursor `after` (NULL or "" for the start), and
 * writes the cursor of the next page into next (size REPO_CURSOR_MAX), or ""
 * when there is no more.  A callback returning non-zero stops the walk and
 * that value is returned.  They read through RocksDB iterators, never a whole
 * repository into memory.  0, ARCA_E_INVALID (bad cursor), ARCA_E_DB.
 */
#define REPO_CURSOR_MAX 4400

struct repo_entry {
    const char *repo;
    uint64_t created_ms;      /* first upload into it */
};
struct name_entry {
    const char *name;
    uint64_t created_ms;
};
/* A version's record (cf versions; the same bytes under its vtime key). */
struct version_state {
    uint64_t created_ms;      /* its first file */
    uint64_t file_count;
    uint64_t total_bytes;
    char stage[STAGE_NAME_MAX]; /* current stage; "" in records older than stages: the first */
    uint64_t stage_ms;        /* when it entered that stage (0: at creation); HLC_MS(stage_hlc),
                                 as revoked_ms and deleted_ms are of their HLCs */
    uint64_t stage_seq;       /* the event that moved it there (0: none) */
    uint64_t stage_hlc;       /* that event's HLC and origin: of several promotions to the */
    char stage_origin[65];    /* same stage, the earliest is kept everywhere */
    uint64_t revoked_ms;      /* 0: not revoked */
    char revoked_by[128];
    char revoke_reason[1025];
    uint64_t revoke_seq;
    uint64_t revoke_hlc;      /* the winning revocation (earliest by HLC, then origin) */
    char revoke_origin[65];
    uint64_t deleted_ms;      /* 0: not deleted; otherwise a tombstone */
    char deleted_by[128];
    uint64_t delete_seq;
    uint64_t delete_hlc;
    char delete_origin[65];
    bool has_build;
    uint64_t build_hlc;       /* the build record's writer (last writer wins) */
    char build_origin[65];
};

struct version_entry {
    const char *version;
    const struct version_state *st;
};

/*
 * want (NULL: every repository) says which repositories are listed at all:
 * the others are not counted against limit, and a cursor never names one.
 */
int repo_list_repos(repo_db *db, const char *after, size_t limit,
                    bool (*want)(void *arg, const char *repo),
                    int (*cb)(void *arg, const struct repo_entry *e), void *arg, char *next);
int repo_list_names(repo_db *db, const char *repo, const char *after, size_t limit,
                    int (*cb)(void *arg, const struct name_entry *e), void *arg, char *next);
/* Newest first. */
int repo_list_versions(repo_db *db, const char *repo, const char *name, const char *after,
                       size_t limit, int (*cb)(void *arg, const struct version_entry *e),
                       void *arg, char *next);
/* By path. */
int repo_list_files(repo_db *db, const char *repo, const char *name, const char *version,
                    const char *after, size_t limit,
                    int (*cb)(void *arg, const struct artifact *a), void *arg, char *next);

/* Existence checks for 404s on listings: 0 when it exists, ARCA_E_NOTFOUND, ARCA_E_DB. */
int repo_repo_exists(repo_db *db, const char *repo);
int repo_name_exists(repo_db *db, const char *repo, const char *name);
int repo_version_exists(repo_db *db, const char *repo, const char *name, const char *version);

/* Counters kept up to date by apply.  0 or ARCA_E_DB. */
int repo_get_stats(repo_db *db, struct repo_stats *st);

/*
 * Walks every blob the index names, in SHA-256 order, calling cb with its
 * digests and block sums (borrowed for the call).  For `arcad verify`.
 */
int repo_walk_blobs(repo_db *db,
                    int (*cb)(void *arg, const struct blob_digests *dig,
                              const struct blob_blocks *blocks),
                    void *arg);

#endif
