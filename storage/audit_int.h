/*
 * Internals shared by audit.c (the Merkle trees, verification),
 * audit_sign.c (keys, the signed text) and audit_origin.c (origin
 * checkpoints).  Nothing outside storage/ includes this header.
 *
 * One tree implementation serves two kinds of tree, told apart by where
 * their nodes live (struct mtree):
 *   - the local tree over this centre's log (cf merkle): node keys
 *     level (1 byte) BE64(index), size key "size";
 *   - one tree per origin over that origin's events in origin_seq order (cf
 *     omerkle): node keys 'n' origin \0 level BE64(index), size key 's' origin.
 * Node (L, i) covers leaves [i * 2^L, (i + 1) * 2^L) and never changes once
 * written; a size record says how many leaves the tree holds.
 */
#ifndef ARCA_AUDIT_INT_H
#define ARCA_AUDIT_INT_H

#include "audit.h"
#include "repo_int.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MTREE_LEVELS 64

/* Where one tree's nodes and size record live. */
struct mtree {
    enum repo_cf cf;
    char prefix[AUDIT_ORIGIN_MAX + 2]; /* node keys: prefix, level, BE64 index */
    size_t plen;
    char size_key[AUDIT_ORIGIN_MAX + 2];
    size_t sklen;
};

/* The local tree (cf merkle). */
void mtree_local(struct mtree *t);
/* The tree of origin (1..AUDIT_ORIGIN_MAX bytes).  0 or ARCA_E_INVALID. */
int mtree_origin(struct mtree *t, const char *origin);

/* Reads go through a reader: the index's own options, or a snapshot's (verify). */
struct reader {
    repo_db *db;
    const rocksdb_readoptions_t *ro;
    const struct mtree *t;
};

/* SHA-256 over up to three parts (blen and clen may be 0); aborts on OOM rather than lie. */
void audit_sha256_parts(const void *a, size_t alen, const void *b, size_t blen, const void *c,
                        size_t clen, uint8_t out[AUDIT_HASH_LEN]);

/* A stored node.  0, ARCA_E_NOTFOUND, ARCA_E_CORRUPT (a value of the wrong length), ARCA_E_DB. */
int mtree_node(const struct reader *r, unsigned level, uint64_t index,
               uint8_t out[AUDIT_HASH_LEN]);
/* The leaves the tree holds (0 when it has no size record).  0, ARCA_E_CORRUPT, ARCA_E_DB. */
int mtree_size(const struct reader *r, uint64_t *size);
/*
 * The root over its first size leaves (size <= its size).  0, ARCA_E_NOTFOUND
 * (size beyond the tree), ARCA_E_CORRUPT (a stored node is missing), ARCA_E_DB.
 */
int mtree_root(const struct reader *r, uint64_t size, uint8_t root[AUDIT_HASH_LEN]);

/* SHA-256 of the empty string: the root of an empty tree. */
void audit_empty_root(uint8_t out[AUDIT_HASH_LEN]);

/* A record's origin (1..AUDIT_ORIGIN_MAX bytes, no NUL) and origin_seq (>= 1); false if not. */
bool origin_fields(json_t *rec, char origin[AUDIT_ORIGIN_MAX + 1], uint64_t *origin_seq);
/*
 * audit_origin_canonical on a parsed record, which loses seq, prev and hash
 * here.  0, ARCA_E_INVALID, -ENOMEM.
 */
int origin_canonical_json(json_t *rec, char **canon, char origin[AUDIT_ORIGIN_MAX + 1],
                          uint64_t *origin_seq);

/* ---- audit_sign.c ---------------------------------------------------------------- */

/*
 * Signs cp, whose tree, origin, size and root are set: fills time (now), the
 * signer's public key and key id, and the signature.  0 or ARCA_E_CRYPTO.
 */
int checkpoint_sign(const audit_signer *s, struct audit_checkpoint *cp);
/* audit_checkpoint_parse on a JSON value already parsed.  0, or ARCA_E_INVALID with *why. */
int checkpoint_from_json(json_t *o, struct audit_checkpoint *cp, const char **why);

/* ---- audit_origin.c ---------------------------------------------------------------- */

/* The record cf ocheckpoints keeps per origin: its pinned key and latest accepted checkpoint. */
struct ocp_record {
    uint8_t public_key[32];     /* pinned on first sight */
    char key_id[17];
    char pinned[32];            /* when the key was pinned */
    char accepted[32];          /* when cp was accepted */
    struct audit_checkpoint cp;
};

/*
 * The stored record of origin, read through r (its tree is ignored).  0 with
 * *found, ARCA_E_CORRUPT (a malformed record, logged), ARCA_E_DB.
 */
int ocp_get(const struct reader *r, const char *origin, struct ocp_record *rec, bool *found);
/* Decodes one stored record.  0 or ARCA_E_CORRUPT. */
int ocp_decode(const char *v, size_t len, struct ocp_record *rec);

#endif
