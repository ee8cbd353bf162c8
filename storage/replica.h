/*
 * Applying other centres' events, and a digest of the replicated state.
 *
 * Replication ships the events of the log (as stored JSON) plus the blobs
 * they name; the receiver hands each event to repo_apply_remote, which
 * decodes it and applies it through the same apply as local writes, under
 * the merge rules (docs/ARCHITECTURE.md "Replication merge rules"):
 *   - idempotent on (origin, origin seq); an origin's events apply in order;
 *   - a coordinate written with different bytes in two centres: the earlier
 *     write by (HLC, origin) wins everywhere, the other is a conflict record;
 *   - stage only moves forward, the furthest promotion wins; revocation is
 *     final; properties and build records are last-writer-wins by (HLC,
 *     origin); a deletion's tombstone wins over everything that reaches it.
 * Every remote event is recorded in the local log, even when it changes
 * nothing, so that this centre can relay it.
 */
#ifndef ARCA_REPLICA_H
#define ARCA_REPLICA_H

#include "repo.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Applies one event as another centre stored it (the JSON of its log
 * record).  blocks: the block sums of the blob an artifact.put names, when
 * the blob is new here (it must already be in the blob store); NULL
 * otherwise.  Events of this centre's own origin are skipped.
 * 0 (*applied: it was new here), ARCA_E_INVALID (malformed, or out of its
 * origin's order), ARCA_E_NOTFOUND (an artifact.put whose blob the index does
 * not know and no blocks were given), ARCA_E_DB.
 */
int repo_apply_remote(repo_db *db, const char *event_json, size_t len,
                      const struct blob_blocks *blocks, bool *applied);

/* The last origin seq applied here from origin (0: none). */
int repo_origin_applied(repo_db *db, const char *origin, uint64_t *seq);

/*
 * A peer's replication cursor: the last seq of the peer's log this centre has
 * taken in (0: none) and that event's chain hash (all zero: unknown), so that
 * the next page can be checked to continue the same log.  Local bookkeeping,
 * not replicated; a lost update only makes the next pull repeat events, which
 * apply idempotently.
 */
int repo_peer_cursor_get(repo_db *db, const char *peer, uint64_t *seq, uint8_t hash[32]);
int repo_peer_cursor_set(repo_db *db, const char *peer, uint64_t seq, const uint8_t hash[32]);

/*
 * The replicated state is compared in parts, one per replicated column
 * family, by the names repo_digest_part_name gives ("repos", "names",
 * "versions", "artifacts", "blobs", "sha1", "props", "propidx", "stageidx",
 * "builds", "conflicts", "blobrefs", "tokens", "token_hash", "origins"), in
 * that order.  Local bookkeeping (local sequence numbers, the event log
 * itself, its Merkle tree, last-use times, deployment keys) is left out.
 *
 * Each key's value is compared by its normalised value: raw values as
 * stored; JSON records without their local sequence numbers (every key
 * ending in "seq"), compact with sorted keys; nothing for the index families
 * (propidx, stageidx, blobrefs), whose keys carry everything.
 */
#define REPO_DIGEST_PARTS 15
/* Longest prefix a range digest takes (the longest key there is). */
#define REPO_RANGE_PREFIX_MAX 2048
/* A range of at most this many keys is answered key by key. */
#define REPO_RANGE_LEAF_MAX 64

/* The name of part i (0 .. REPO_DIGEST_PARTS-1), static; NULL past the end. */
const char *repo_digest_part_name(size_t i);

/*
 * The uploads (artifact.put events) this centre's log holds after seq, and
 * their bytes: what a peer whose cursor is at seq still has to take in, at
 * most (content it already has is not fetched again).  0 or ARCA_E_DB.
 */
int repo_puts_after(repo_db *db, uint64_t after, uint64_t *count, uint64_t *bytes);

/*
 * xxh3-64 over the replicated state, every part in order, every key in
 * order.  Two centres that applied the same events have the same digest,
 * whatever the order.
 */
int repo_state_digest(repo_db *db, uint64_t *digest);

/* One part's key count and range digest (see repo_range_digest), at one point in time. */
struct repo_part_digest {
    const char *part; /* static */
    uint64_t count;
    uint64_t digest;
};

/*
 * repo_state_digest, plus each part's count and digest, all read from one
 * snapshot of the index in a single pass.  parts: REPO_DIGEST_PARTS
 * entries, filled in part order.  0, -ENOMEM or ARCA_E_DB.
 */
int repo_state_digest_parts(repo_db *db, uint64_t *digest,
                            struct repo_part_digest parts[REPO_DIGEST_PARTS]);

/* One key of a range, with the xxh3-64 of its normalised value. */
struct repo_range_key {
    char *key; /* key bytes (not NUL-terminated); owned by whoever filled the struct */
    size_t len;
    uint64_t digest;
};

/* The keys of a range whose byte after the prefix is `byte`. */
struct repo_range_bucket {
    uint8_t byte;
    uint64_t count;
    uint64_t digest;
};

/*
 * What a range digest finds under a prefix.
 *
 * The digest of a list of keys is the xxh3-64 of, for each key in key order,
 * BE64(key length) || key || BE64(xxh3-64 of its normalised value); an empty
 * range has the xxh3-64 of nothing.  Being a function of the (key, value
 * digest) list alone, it can be recomputed from a leaf answer
 * (repo_range_fold), which is how a client lines a leaf answer up against
 * another centre's buckets.
 */
struct repo_range {
    uint64_t count;  /* keys under the prefix (the prefix itself included, if a key) */
    uint64_t digest; /* of all of them */
    /* The prefix itself is a key: the digest of its normalised value. */
    bool has_exact;
    uint64_t exact_digest;
    /* The longer keys, by their byte after the prefix: only non-empty buckets, ascending. */
    size_t nbuckets;
    struct repo_range_bucket buckets[256];
    /* leaf (count <= REPO_RANGE_LEAF_MAX): every key, in key order; the keys are malloc'd. */
    bool leaf;
    size_t nkeys;
    struct repo_range_key keys[REPO_RANGE_LEAF_MAX];
};

/*
 * The range digest of the keys of part (a name as repo_digest_part_name
 * gives) that start with prefix (plen bytes, up to REPO_RANGE_PREFIX_MAX; 0:
 * the whole part), read in one pass from one iterator: memory stays bounded
 * by REPO_RANGE_LEAF_MAX keys whatever the part's size.  out is overwritten;
 * release it with repo_range_cleanup, also after a failure.
 * 0, ARCA_E_NOTFOUND (no such part), ARCA_E_INVALID (prefix too long),
 * -ENOMEM, ARCA_E_DB.
 */
int repo_range_digest(repo_db *db, const char *part, const void *prefix, size_t plen,
                      struct repo_range *out);

/* Frees the keys out holds (not out itself) and zeroes it. */
void repo_range_cleanup(struct repo_range *out);

/*
 * The range digest of n keys given in key order (see struct repo_range):
 * what a centre would answer for exactly these keys.  The keys are only
 * read.  0 or -ENOMEM.
 */
int repo_range_fold(const struct repo_range_key *keys, size_t n, uint64_t *digest);

/*
 * Fetches one centre's range digest of part under prefix, as
 * repo_range_digest answers it (a remote one: over HTTP).  A leaf needs
 * only count, digest, leaf and keys; the rest is derived from the keys.
 * Returns 0, or an error that stops the comparison.
 */
typedef int (*repo_range_fetch_fn)(void *arg, const char *part, const void *prefix, size_t plen,
                                   struct repo_range *out);

enum repo_diff_kind {
    REPO_DIFF_ONLY_A,  /* the key is at centre a only */
    REPO_DIFF_ONLY_B,  /* at centre b only */
    REPO_DIFF_DIFFERS, /* at both, with different normalised values */
};

/* One key where the centres differ (key: len bytes, valid during the call); nonzero stops. */
typedef int (*repo_diff_fn)(void *arg, const char *part, const char *key, size_t len,
                            enum repo_diff_kind kind);

/*
 * Narrows part down to the keys where centres a and b differ, calling found
 * for each, in key order.  It fetches both sides' digest of the whole part,
 * then of every bucket whose count or digest differ, byte by byte, until
 * both sides answer key by key; a side that answered with keys is not asked
 * again below that prefix (its buckets are recomputed with repo_range_fold).
 * Requests grow with the number of differing keys times their depth, not
 * with the part's size.  Memory: two ranges per level of depth.
 * Returns 0; the first nonzero a fetch or found returned; ARCA_E_INVALID when
 * a side's answer does not add up (keys out of order, or not matching its
 * count and digest: another digest definition); -ENOMEM.
 */
int repo_range_diff(const char *part, repo_range_fetch_fn fetch_a, void *arg_a,
                    repo_range_fetch_fn fetch_b, void *arg_b, repo_diff_fn found, void *arg);

#endif
