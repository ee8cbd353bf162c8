/*
 * Internals shared by repo.c (open, reads, listings) and event.c (apply, the
 * only writer).  Nothing outside storage/ includes this header: it is where
 * RocksDB types live.  Unit tests include it to read the event log directly.
 *
 * Data layout (every key segment is a validated coordinate part, which never
 * contains NUL, so '\0' separators keep prefix iteration in segment order):
 *
 *   cf         key                                      value
 *   meta       "state"                                  JSON counters: next_seq, head, stats
 *              "centre"                                 the centre id (bytes)
 *   repos      repo                                     JSON {created_ms}
 *   names      repo \0 name                             JSON {created_ms}
 *   versions   repo \0 name \0 version                  JSON {created_ms, file_count, total_bytes}
 *   vtime      repo \0 name \0 BE64(~created_ms) version  the same JSON as versions
 *   artifacts  repo \0 name \0 version \0 path          JSON {sha256, sha1, md5, size,
 *                                                         created_ms, created_by, event_seq}
 *   blobs      sha256 (32 bytes)                        binary, see blob record below
 *   sha1       sha1 (20 bytes)                          sha256 (32 bytes)
 *   events     BE64(local seq)                          JSON event with prev and hash
 *   versions   (the record is struct version_state as JSON: counts, stage, revocation,
 *               tombstone; see lifecycle.h)
 *   vevents    version key \0 BE64(seq)                 action name: the events about a version
 *   props      version key \0 property key              JSON {v (null: removed), hlc, origin, seq}
 *   propidx    key \0 value \0 repo \0 name \0 version    "" (current values only)
 *   blobrefs   sha256 (32 bytes) repo \0 name \0 version \0 path   BE64(seq of the put); kept
 *               when the version is deleted, so trace still finds the coordinate
 *   stageidx   stage \0 repo \0 name \0 version          "" (current stage of live versions)
 *   builds     repo \0 name \0 version                  the normalized build record JSON
 *   deploys    environment \0 BE64(~seq)                JSON deployment record
 *   tokens     id (32 hex)                              JSON token (see token.h), no secret
 *   token_hash SHA-256(secret) (32 bytes)               id
 *   token_used id                                       BE64 last-used ms (not an event)
 *   merkle     level (1 byte) BE64(index)              32-byte RFC 6962 node hash (audit.c)
 *              "size"                                   BE64 events the tree covers
 *   omerkle    'n' origin \0 level (1 byte) BE64(index)  node of origin's tree, whose leaf i
 *                                                       is its event origin_seq i + 1 (audit.c)
 *              's' origin                               BE64 events of origin the tree covers
 *   ocheckpoints origin                                 JSON {public_key, key_id, pinned,
 *                                                       accepted, checkpoint} (audit_origin.c)
 */
#ifndef ARCA_REPO_INT_H
#define ARCA_REPO_INT_H

#include "repo.h"

#include <pthread.h>
#include <regex.h>
#include <stdatomic.h>
#include <rocksdb/c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum repo_cf {
    CF_DEFAULT,
    CF_META,
    CF_REPOS,
    CF_NAMES,
    CF_VERSIONS,
    CF_VTIME,
    CF_ARTIFACTS,
    CF_BLOBS,
    CF_SHA1,
    CF_EVENTS,
    CF_TOKENS,      /* id (hex) → token JSON */
    CF_TOKEN_HASH,  /* SHA-256 of the secret (32 bytes) → id */
    CF_TOKEN_USED,  /* id → BE64 last-used ms (not an event) */
    CF_VEVENTS,     /* version key \0 BE64(seq) → action: the events about a version */
    CF_PROPS,       /* version key \0 property key → {v, hlc, origin, seq} (v null: removed) */
    CF_PROPIDX,     /* property key \0 value \0 version key → "" */
    CF_BLOBREFS,    /* sha256 (32) version key \0 path → BE64(seq of the put) */
    CF_STAGEIDX,    /* stage \0 version key → "" */
    CF_BUILDS,      /* version key → build record JSON */
    CF_DEPLOYS,     /* environment \0 BE64(~seq) → deployment JSON */
    CF_MERKLE,      /* the audit log's Merkle tree nodes (audit.c) */
    CF_ORIGINS,     /* origin centre id → BE64 its last applied origin seq */
    CF_CONFLICTS,   /* coordinate key \0 loser origin \0 BE64(loser hlc) → conflict JSON */
    CF_OMERKLE,     /* every origin's Merkle tree nodes and size (audit.c) */
    CF_OCHECKPOINTS, /* origin → its pinned key and latest accepted checkpoint (audit_origin.c) */
    CF_COUNT
};

/* Longest key: repo, name, version and path with three separators, rounded up. */
#define KEY_MAX 2048
#define CENTRE_MAX 64

/* The counters apply read-modify-writes; cached in memory, persisted in meta "state". */
struct repo_counters {
    uint64_t next_seq;   /* the local sequence number of the next event */
    uint8_t head[32];    /* hash of the last event (zeros before the first) */
    struct repo_stats st;
};

struct repo_db {
    rocksdb_t *db;
    rocksdb_options_t *opts;
    rocksdb_cache_t *cache;
    rocksdb_readoptions_t *ropts;
    rocksdb_writeoptions_t *wopts;
    rocksdb_column_family_handle_t **handles; /* every family opened, ours and unknown ones */
    size_t nhandles;
    rocksdb_column_family_handle_t *cf[CF_COUNT]; /* borrowed from handles */
    bool readonly;
    char centre[CENTRE_MAX + 1];

    /* Bumped after every applied token event: lets auth/ cache lookups safely. */
    _Atomic uint64_t token_gen;
    /* The promotion policy (lifecycle.c); set before serving, read under apply_mu. */
    struct stage_policy policy;
    regex_t gate_re[STAGES_MAX][GATE_RULES_MAX];
    bool gate_re_set[STAGES_MAX][GATE_RULES_MAX];
    /* Serializes apply; guards ctr and puts. */
    pthread_mutex_t apply_mu;
    struct repo_counters ctr;
    /*
     * Uploads (artifact.put events) in the log so far and their bytes: the
     * newest "pc/" + BE64(seq) record of CF_META (puts.c), cached.
     */
    uint64_t put_count, put_bytes;
};

/* Turns a RocksDB error string into ARCA_E_DB with a log line; frees err. */
int db_error(const char *what, char *err);

/*
 * Point lookup.  0 with *val (free with rocksdb_free) and *vlen, ARCA_E_NOTFOUND,
 * or ARCA_E_DB.  val may be NULL for an existence check.
 */
int db_get(repo_db *db, enum repo_cf cf, const char *key, size_t klen, char **val, size_t *vlen);

/*
 * Joins the given segments with '\0' separators into buf (KEY_MAX bytes); a
 * trailing separator is added when trailing is true (a listing prefix).
 * Segments must already be validated coordinate parts.  Returns the length.
 */
size_t key_make(char *buf, bool trailing, const char *a, const char *b, const char *c,
                const char *d);

void put_be64(uint8_t *p, uint64_t v);
uint64_t get_be64(const uint8_t *p);

/* Records (repo.c).  Encoders return malloc'd bytes (free()) or NULL on OOM. */
char *rec_artifact_encode(const struct artifact *a, size_t *len);
int rec_artifact_decode(const char *v, size_t len, struct artifact *a);
char *rec_created_encode(uint64_t created_ms, size_t *len);
int rec_created_decode(const char *v, size_t len, uint64_t *created_ms);
char *rec_vstate_encode(const struct version_state *st, size_t *len);
int rec_vstate_decode(const char *v, size_t len, struct version_state *st);
/* Blob record: 0x01, sha1[20], md5[16], BE64 size, BE32 count, count x BE64 sums. */
char *rec_blob_encode(const struct blob_digests *dig, const struct blob_blocks *blocks,
                      size_t *len);
/* blocks may be NULL; dig->sha256 is not touched (it is the key). */
int rec_blob_decode(const char *v, size_t len, struct blob_digests *dig,
                    struct blob_blocks *blocks);
char *rec_counters_encode(const struct repo_counters *c, size_t *len);

/* Token records (repo.c). */
struct token;
char *rec_token_encode(const struct token *t, size_t *len);
int rec_token_decode(const char *v, size_t len, struct token *t);

/* Builds the vtime key for a version created at created_ms. */
size_t vtime_key(char *buf, const char *repo, const char *name, uint64_t created_ms,
                 const char *version);

/*
 * Reads the event with local sequence seq as its stored JSON text (malloc'd,
 * NUL-terminated, the caller frees).  0, ARCA_E_NOTFOUND, ARCA_E_DB.  For the
 * audit log and for tests of the hash chain.
 */
int event_read(repo_db *db, uint64_t seq, char **json);

/*
 * audit.c, for apply: adds the Merkle leaf of the event seq (its stored record,
 * rec of len bytes) and every perfect subtree it completes to batch b, with
 * the tree's new size.  0, ARCA_E_CORRUPT (a stored node is missing), ARCA_E_DB.
 */
int merkle_stage(repo_db *db, rocksdb_writebatch_t *b, uint64_t seq, const char *rec, size_t len);
/* Counts an upload event at seq (size bytes) into the batch; puts_commit after the write. */
void puts_stage(repo_db *db, rocksdb_writebatch_t *b, uint64_t seq, uint64_t size);
void puts_commit(repo_db *db, uint64_t size);
/* Loads the cached totals at open.  0 or ARCA_E_DB. */
int puts_load(repo_db *db);
/*
 * audit.c, for a read-write open after the counters are loaded: builds the
 * tree over events it does not cover yet (a log from before the audit tree).
 * 0, ARCA_E_CORRUPT (the tree is ahead of the log, or the log has a gap), ARCA_E_DB.
 */
int merkle_catch_up(repo_db *db);

#endif
