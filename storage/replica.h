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
 * taken in (0: none).  Local bookkeeping, not replicated; a lost update only
 * makes the next pull repeat events, which apply idempotently.
 */
int repo_peer_cursor_get(repo_db *db, const char *peer, uint64_t *seq);
int repo_peer_cursor_set(repo_db *db, const char *peer, uint64_t seq);

/*
 * xxh3-64 over the replicated state in key order: artifacts, versions,
 * properties and their index, stage index, build records, conflicts, blobs,
 * tokens, content references (keys), origins.  Local bookkeeping (local
 * sequence numbers, the event log itself, its Merkle tree, last-use times,
 * deployment keys) is left out.  Two centres that applied the same events
 * have the same digest, whatever the order.
 */
int repo_state_digest(repo_db *db, uint64_t *digest);

#endif
