/*
 * The tamper-evident audit log over the event log (storage/event.c).
 *
 * Merkle log (RFC 6962 / RFC 9162, SHA-256).  Leaf i (0-based) is the event
 * with local seq i + 1; its hash is SHA-256(0x00 || the event record's bytes
 * exactly as stored in cf events), an interior node is SHA-256(0x01 || left
 * || right).  apply (event.c) adds the new leaf and every perfect subtree it
 * completes to the same write batch as the event, so the tree and the log
 * never disagree; roots and proofs for any size read O(log n) stored nodes.
 *
 * Checkpoints: {origin, size, root, time} signed with the data directory's
 * Ed25519 key (DATA/audit.key, PEM PKCS#8, mode 0600, created on first start).
 * The signed bytes are the canonical text (see audit_checkpoint_text):
 *
 *     arca-checkpoint/v1\n
 *     <origin>\n
 *     <size, decimal>\n
 *     <root, 64 lowercase hex digits>\n
 *     <time, RFC 3339 UTC with milliseconds>\n
 *
 * Per-origin trees.  The local tree differs between centres (each numbers
 * the events it holds in its own order); what they share is each origin's
 * sequence of events.  So every centre also keeps, for every origin, an RFC
 * 6962 tree over that origin's events in origin_seq order: leaf origin_seq - 1
 * is SHA-256(0x00 || the origin-canonical record), the stored record without
 * "seq", "prev" and "hash" as compact JSON with sorted keys
 * (audit_origin_canonical) -- the same bytes at every centre, since a
 * received event keeps everything else as its origin wrote it.  apply adds
 * both leaves in the event's write batch.  A centre signs checkpoints of its
 * own origin's tree (origin checkpoints, whose signed text starts
 * "arca-origin-checkpoint/v1"), and keeps the latest one it accepted from
 * every other origin, with that origin's key pinned on first sight (trust on
 * first use): any centre can then show that no centre's history was
 * rewritten, neither the origin's own nor a relay's copy of it.
 *
 * Verification (audit_verify) re-derives everything from the stored events:
 * seq keys contiguous from 1, each record's "seq", its hash chain link and
 * hash, its Merkle leaf and every stored interior node, the counters,
 * optionally that the log extends a saved checkpoint, and every origin's
 * tree, each against its accepted origin checkpoint.
 *
 * Sizes and sequence numbers are uint64_t; a tree of size n holds events
 * 1..n.  Functions return 0 or a negative ARCA_E_* / -errno code.
 * Thread safety: everything here may run from any thread beside apply.
 */
#ifndef ARCA_AUDIT_H
#define ARCA_AUDIT_H

#include "repo.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUDIT_HASH_LEN 32
/* An inclusion path has at most 63 hashes and a consistency proof at most 2 x 63 + 1. */
#define AUDIT_PROOF_MAX 128
/* How many problems a verification report lists (it counts them all). */
#define AUDIT_PROBLEMS_MAX 16
#define AUDIT_KEY_FILE "audit.key"
#define AUDIT_ORIGIN_MAX 64
/* The largest size or seq the API accepts (sequence numbers are JSON integers). */
#define AUDIT_SIZE_MAX ((uint64_t)INT64_MAX)

/* ---- the tree ------------------------------------------------------------ */

/* The number of events the Merkle tree covers (the log's size).  0 or ARCA_E_DB. */
int audit_size(repo_db *db, uint64_t *size);

/*
 * The root of the tree over events 1..size (size <= audit_size; size 0 gives
 * SHA-256 of the empty string, as RFC 6962 says).  0, ARCA_E_NOTFOUND (size
 * beyond the log), ARCA_E_CORRUPT (a stored node is missing), ARCA_E_DB.
 */
int audit_root(repo_db *db, uint64_t size, uint8_t root[AUDIT_HASH_LEN]);

/* The stored leaf hash of event seq.  0, ARCA_E_NOTFOUND, ARCA_E_DB. */
int audit_leaf_hash(repo_db *db, uint64_t seq, uint8_t out[AUDIT_HASH_LEN]);

/*
 * The inclusion proof (RFC 9162 2.1.3, "audit path") of event seq in the tree
 * of size size (1 <= seq <= size <= audit_size): *n hashes into path (room for
 * AUDIT_PROOF_MAX), and the root of that tree into root.  0,
 * ARCA_E_INVALID (seq 0 or seq > size), ARCA_E_NOTFOUND (size beyond the log),
 * ARCA_E_CORRUPT, ARCA_E_DB.
 */
int audit_inclusion_proof(repo_db *db, uint64_t seq, uint64_t size,
                          uint8_t path[][AUDIT_HASH_LEN], size_t *n, uint8_t root[AUDIT_HASH_LEN]);

/*
 * The consistency proof (RFC 9162 2.1.4) between the trees of sizes first and
 * second (1 <= first <= second <= audit_size; equal sizes give an empty
 * proof), with both roots.  0, ARCA_E_INVALID, ARCA_E_NOTFOUND, ARCA_E_CORRUPT,
 * ARCA_E_DB.
 */
int audit_consistency_proof(repo_db *db, uint64_t first, uint64_t second,
                            uint8_t proof[][AUDIT_HASH_LEN], size_t *n,
                            uint8_t first_root[AUDIT_HASH_LEN],
                            uint8_t second_root[AUDIT_HASH_LEN]);

/* RFC 6962 hashes: SHA-256(0x00 || data) and SHA-256(0x01 || left || right). */
void audit_hash_leaf(const void *data, size_t len, uint8_t out[AUDIT_HASH_LEN]);
void audit_hash_children(const uint8_t left[AUDIT_HASH_LEN], const uint8_t right[AUDIT_HASH_LEN],
                         uint8_t out[AUDIT_HASH_LEN]);

/* ---- reading the log ------------------------------------------------------ */

/*
 * Calls cb(arg, seq, record, len) for at most limit events with seq > after,
 * in seq order; record is the stored JSON (borrowed for the call, no NUL).
 * *more is set when further events follow.  A non-zero cb return stops the
 * walk and is returned.  0 or ARCA_E_DB.
 */
int audit_events(repo_db *db, uint64_t after, size_t limit,
                 int (*cb)(void *arg, uint64_t seq, const char *record, size_t len), void *arg,
                 bool *more);

/* ---- checkpoints ------------------------------------------------------------ */

/* Which tree a checkpoint is of; part of the signed text, so one cannot pass for the other. */
enum audit_tree {
    AUDIT_TREE_LOCAL = 0,       /* the local log: "arca-checkpoint/v1" */
    AUDIT_TREE_ORIGIN = 1,      /* origin's own events: "arca-origin-checkpoint/v1" */
};

struct audit_checkpoint {
    enum audit_tree tree;
    char origin[AUDIT_ORIGIN_MAX + 1];
    uint64_t size;
    uint8_t root[AUDIT_HASH_LEN];
    char time[32];              /* RFC 3339 UTC, e.g. "2026-11-23T10:00:00.123Z" */
    uint8_t public_key[32];     /* raw Ed25519 public key */
    char key_id[17];            /* hex of the first 8 bytes of SHA-256(public_key) */
    uint8_t signature[64];
};

/* Holds the private key; opaque.  Its key material never reaches a log line. */
typedef struct audit_signer audit_signer;

/*
 * Loads DATA/audit.key, creating it (mode 0600) when it does not exist and
 * create is true (*created = 1 then).  An unreadable, malformed or non-Ed25519
 * file is an error, never replaced: ARCA_E_CONFIG (logged, naming the file),
 * -errno, ARCA_E_CRYPTO.  The caller owns *out (audit_signer_free).
 */
int audit_signer_open(const char *data_dir, bool create, audit_signer **out, int *created);
void audit_signer_free(audit_signer *s);
/* The signer's public key and key id (17 bytes with the NUL). */
void audit_signer_public(const audit_signer *s, uint8_t public_key[32], char key_id[17]);

/*
 * Signs a checkpoint of the tree of size size (UINT64_MAX: the current size)
 * for the index's centre, timed now.  0, ARCA_E_NOTFOUND (size beyond the
 * log), ARCA_E_CORRUPT, ARCA_E_DB, ARCA_E_CRYPTO.
 */
int audit_checkpoint_make(repo_db *db, const audit_signer *s, uint64_t size,
                          struct audit_checkpoint *cp);

/*
 * Signs a checkpoint of this centre's own origin tree at its current size
 * (the last origin_seq this centre gave out), timed now.  0, ARCA_E_CORRUPT,
 * ARCA_E_DB, ARCA_E_CRYPTO.
 */
int audit_origin_checkpoint_make(repo_db *db, const audit_signer *s, struct audit_checkpoint *cp);

/*
 * Writes the canonical signed text of cp (see the top of this file; an origin
 * checkpoint's first line is "arca-origin-checkpoint/v1") into buf
 * of cap bytes, NUL-terminated; returns its length, or 0 if it does not fit.
 */
size_t audit_checkpoint_text(const struct audit_checkpoint *cp, char *buf, size_t cap);

/* True when cp's signature is valid for its own public key (and key_id matches it). */
bool audit_checkpoint_signature_ok(const struct audit_checkpoint *cp);

/*
 * The checkpoint as JSON: {origin, size, root (hex), time, key_id, public_key
 * (base64 of the raw 32 bytes), signature (base64)}, and "tree": "origin" for
 * an origin checkpoint (a checkpoint of the local log has no "tree").  New
 * reference, or NULL on OOM.
 */
json_t *audit_checkpoint_json(const struct audit_checkpoint *cp);

/* Parses that JSON (text of len bytes).  0, or ARCA_E_INVALID with *why. */
int audit_checkpoint_parse(const char *text, size_t len, struct audit_checkpoint *cp,
                           const char **why);

/* ---- per-origin trees and origin checkpoints ------------------------------------ */

/*
 * The origin-canonical form of a stored event record (rec, len bytes): the
 * record without "seq", "prev" and "hash", as compact JSON with sorted keys
 * (*canon: malloc'd, NUL-terminated, the caller frees it), and the record's
 * origin and origin_seq.  Its leaf in the origin's tree is audit_hash_leaf of
 * that text.  0, ARCA_E_INVALID (not JSON, or no string origin of
 * 1..AUDIT_ORIGIN_MAX bytes, or no integer origin_seq >= 1), -ENOMEM.
 */
int audit_origin_canonical(const char *rec, size_t len, char **canon,
                           char origin[AUDIT_ORIGIN_MAX + 1], uint64_t *origin_seq);

/* The events of origin its tree holds here (0: none).  0, ARCA_E_INVALID (bad origin), ARCA_E_DB. */
int audit_origin_size(repo_db *db, const char *origin, uint64_t *size);

/*
 * The root of origin's tree over its events 1..size (size <= its tree's
 * size).  0, ARCA_E_INVALID, ARCA_E_NOTFOUND (size beyond what this centre
 * holds), ARCA_E_CORRUPT, ARCA_E_DB.
 */
int audit_origin_root(repo_db *db, const char *origin, uint64_t size,
                      uint8_t root[AUDIT_HASH_LEN]);

/* The stored leaf hash of origin's event origin_seq.  0, ARCA_E_INVALID, ARCA_E_NOTFOUND, ARCA_E_DB. */
int audit_origin_leaf_hash(repo_db *db, const char *origin, uint64_t origin_seq,
                           uint8_t out[AUDIT_HASH_LEN]);

/* audit_inclusion_proof in origin's tree, for its event origin_seq.  Same codes. */
int audit_origin_inclusion_proof(repo_db *db, const char *origin, uint64_t origin_seq,
                                 uint64_t size, uint8_t path[][AUDIT_HASH_LEN], size_t *n,
                                 uint8_t root[AUDIT_HASH_LEN]);

/* audit_consistency_proof in origin's tree.  Same codes. */
int audit_origin_consistency_proof(repo_db *db, const char *origin, uint64_t first,
                                   uint64_t second, uint8_t proof[][AUDIT_HASH_LEN], size_t *n,
                                   uint8_t first_root[AUDIT_HASH_LEN],
                                   uint8_t second_root[AUDIT_HASH_LEN]);

/* The body of GET /api/v1/audit/origins/checkpoints: a JSON array with this
   centre's own freshly signed origin checkpoint first, then the latest accepted
   checkpoint of every other origin.  Caller owns *out. */
int audit_origin_checkpoints(repo_db *db, const audit_signer *s, json_t **out);

/* Accepts one element of that array from a peer.  Checks the signature; pins
   the origin's key on first sight (a different key later → ARCA_E_CONFLICT);
   if this centre holds at least cp.size events of that origin, the local
   per-origin root at cp.size must equal cp.root (else ARCA_E_CONFLICT: that
   origin's history differs here — logged at error level); keeps it if it is
   newer than the stored one.  A checkpoint of this centre's own origin is
   ignored (return 0).  0, ARCA_E_INVALID (malformed/bad signature, with why),
   ARCA_E_CONFLICT (with why), ARCA_E_DB.

   Details: cp is borrowed.  why (whylen bytes, may be NULL) receives a
   one-line reason on every refusal.  The key is pinned when the first
   checkpoint of that origin is kept, never by one that is refused.  "Newer"
   means a larger size, or the same size (and root) signed later; a smaller
   size than the stored one is checked against the local tree when it can be
   and otherwise dropped (0).  Two checkpoints of the same size with different
   roots are a conflict (the origin signed two histories).  A checkpoint larger
   than what this centre holds is kept and checked when the events arrive
   (apply logs a mismatch at error level) and by audit_verify.  Serialized with
   apply; ARCA_E_DB on a read-only index. */
int audit_origin_checkpoint_accept(repo_db *db, json_t *cp, char *why, size_t whylen);

/*
 * The body of GET /api/v1/audit/origins: {centre, origins: [...]}, one entry
 * for this centre and one per origin it holds events or an accepted
 * checkpoint of, sorted by origin: {origin, self (this centre's own), events (held here), root (of its
 * tree at that size), key_id (pinned, or null), checkpoint (null, or {size,
 * root, key_id, time, accepted}), verified (true: the tree here has the
 * checkpoint's root at its size; false: it has not, or its size record is
 * damaged, with "reason"; null: no checkpoint, or fewer events held than it
 * covers, with "reason")}.  Reads O(log n) nodes per origin.  The caller owns
 * *out.  0, ARCA_E_CORRUPT, ARCA_E_DB, -ENOMEM.
 */
int audit_origins(repo_db *db, json_t **out);

/* ---- verification ----------------------------------------------------------- */

struct audit_problem {
    uint64_t seq;               /* the event it names; 0 when none (e.g. the counters) */
    const char *kind;           /* static: "removed", "altered", "reordered", "chain",
                                   "appended", "merkle", "counters", "checkpoint", "origin" */
    char origin[AUDIT_ORIGIN_MAX + 1]; /* the origin it concerns, "" when unknown */
    uint64_t origin_seq;        /* that origin's event it names; 0 when none */
    char message[256];
};

/* How many origins a verification report lists (it counts them all). */
#define AUDIT_ORIGINS_MAX 32

/* One origin's tree as verification recomputed it. */
struct audit_origin_result {
    char origin[AUDIT_ORIGIN_MAX + 1];
    uint64_t events;            /* its events in the log */
    bool root_known;            /* root: recomputed over them (false when out of order) */
    uint8_t root[AUDIT_HASH_LEN];
    bool checkpoint;            /* an accepted checkpoint exists: cp_* hold it */
    uint64_t cp_size;
    uint8_t cp_root[AUDIT_HASH_LEN];
    char cp_key_id[17];
    char cp_time[32];
    int verified;               /* 1 matches it, 0 does not, -1 unknown (none, or too few events) */
};

struct audit_report {
    bool ok;
    uint64_t size;              /* events the log holds (the counters' view) */
    uint64_t events_checked;
    bool root_known;            /* root holds the root recomputed from the events */
    uint8_t root[AUDIT_HASH_LEN];
    uint64_t problem_count;     /* every problem found; the first ones are listed */
    size_t nproblems;
    struct audit_problem problems[AUDIT_PROBLEMS_MAX]; /* in log order: [0] is the first */
    /* With a checkpoint: */
    bool checkpoint_checked;
    bool checkpoint_signature_ok;
    bool checkpoint_extended;   /* the log's first cp->size events have cp->root */
    /* Every origin's tree, sorted by origin: */
    uint64_t origin_count;
    size_t norigins;
    struct audit_origin_result origins[AUDIT_ORIGINS_MAX];
};

/*
 * Re-derives everything from a consistent snapshot of the stored events (an
 * O(n) scan; safe beside a running apply) and fills rep, including every
 * origin's tree against its accepted checkpoint (problems of kind "origin"
 * name the origin and, where the events show it, the origin_seq).  cp may be
 * NULL; otherwise its signature is checked and that the log extends it (an
 * origin checkpoint there is a problem: audit_origins checks those).  trusted_key
 * (may be NULL) is the public key checkpoints must be signed with.  Returns 0
 * when the scan ran (rep->ok says whether everything held), or ARCA_E_DB /
 * -ENOMEM when it could not.
 */
int audit_verify(repo_db *db, const struct audit_checkpoint *cp, const uint8_t *trusted_key,
                 struct audit_report *rep);

/*
 * The report as JSON: {ok, size, events_checked, root (hex or null),
 * problem_count, first_problem (or null), problems: [{seq, kind, message,
 * and origin, origin_seq when known}], origin_count, origins: [{origin,
 * events, root (or null), checkpoint (null or {size, root, key_id, time}),
 * verified (true, false or null)}], checkpoint (only with one): {size, root,
 * key_id, signature_ok, extended}}.
 * cp is the checkpoint that was given, or NULL.  New reference, NULL on OOM.
 */
json_t *audit_report_json(const struct audit_report *rep, const struct audit_checkpoint *cp);

#endif
