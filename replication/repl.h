/*
 * Replication between centres: one puller thread per configured peer.
 *
 * Each puller asks its peer for the events of the peer's log after a cursor
 * (GET /api/v1/replication/events, a page of at most replication.batch
 * events, bounded in bytes), fetches the blobs the page's artifact.put events
 * name that this centre lacks (GET /api/v1/replication/blobs/SHA256, up to
 * replication.parallel_fetches at once, resumed with Range after a broken
 * transfer, verified by SHA-256 and size before they are committed), then
 * hands every event, in order, to storage's repo_apply_remote(): the same
 * apply as local writes, idempotent on (origin, origin seq).  The peer's log
 * holds the events it relayed as well as its own, so a third centre's events
 * arrive through any peer.  The cursor (seq and chain hash) is persisted after
 * every page; a page that does not continue that log is read again from 0.
 *
 * A peer that is down or cut off only makes its puller back off and retry
 * (0.5 s doubling up to replication.retry_max_seconds); nothing local waits
 * for it.  Memory is bounded by one page plus, per fetch thread, one
 * connection and one 1 MiB buffer, whatever the backlog.
 *
 * When caught up (at most once a second) a puller also takes in the peer's
 * origin checkpoints (GET /api/v1/audit/origins/checkpoints): each origin's
 * signed statement of its log, checked against this centre's copy of that
 * origin's events (storage/audit.h, audit_origin_checkpoint_accept).
 *
 * Thread safety: repl_status may be called from any thread.
 */
#ifndef ARCA_REPL_H
#define ARCA_REPL_H

#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct repo_db repo_db;
typedef struct blob_store blob_store;
typedef struct repl repl;

/* The replication protocol version this build speaks. */
int repl_protocol_version(void);

/* A repair from one peer (repl_repair_start), as the status shows it. */
struct repl_repair_status {
    bool requested, running, deep;
    uint64_t started_ms, finished_ms;  /* 0: not yet */
    uint64_t blobs_checked;            /* blobs of the index looked at */
    uint64_t blobs_bad;                /* missing, the wrong size, or (deep) failing their sums */
    uint64_t blobs_refetched;          /* fetched again from the peer, verified, in place */
    uint64_t blobs_failed;             /* could not be fetched (see last_error) */
};

/* What one peer's puller knows, as GET /api/v1/replication and /metrics show it. */
struct repl_peer_status {
    char name[CONFIG_PEER_NAME_MAX + 1];
    char url[512];
    bool connected;          /* the last request to the peer succeeded */
    uint64_t cursor;         /* the last seq of the peer's log taken in */
    uint64_t head;           /* the peer's log size at the last answer */
    /* The last event applied from this peer (origin_seq 0: none yet in this run). */
    char last_origin[64];
    uint64_t last_origin_seq;
    uint64_t last_hlc;
    uint64_t events_applied;  /* this run: events new here */
    uint64_t events_seen;     /* this run: events read (including ones already here) */
    uint64_t blobs_fetched, bytes_fetched, bytes_resumed;
    /* The peer's uploads (and bytes) after the cursor: at most what is still to fetch. */
    uint64_t blobs_behind, bytes_behind;
    double lag_seconds;       /* now − HLC time of the oldest event not yet applied; 0 caught up;
                                 while not connected, at least the time since the last contact */
    uint64_t last_contact_ms; /* wall clock of the last successful request */
    uint64_t checkpoints_accepted; /* this run: origin checkpoints taken in from this peer */
    uint64_t checkpoint_conflicts; /* this run: ones that disagree with our copy of the origin */
    uint64_t errors;          /* this run */
    char last_error[256];
    uint64_t last_error_ms;
    struct repl_repair_status repair;
};

/*
 * Starts a puller per cfg->peers entry (none: *out is still a valid, idle
 * repl).  centre: this centre's id (its own events coming back are skipped).
 * 0, ARCA_E_CONFIG (an unreadable token_file, named in the log), -ENOMEM
 * (nothing is left running then).
 */
int repl_start(const struct arca_config *cfg, repo_db *db, blob_store *bs, repl **out);
/*
 * Stops every puller and waits for them (an in-flight transfer is abandoned
 * and resumes next time); repl_status and repl_repair_start stay safe to call
 * (the server's workers may still be answering) until repl_stop.
 */
void repl_halt(repl *r);
/* repl_halt, then frees.  NULL is a no-op. */
void repl_stop(repl *r);
/*
 * Asks peer's puller to repair this centre from it: its log is read again
 * from the start (events missing here are applied; the others are skipped),
 * and every blob the index names is checked — present and of the right size,
 * or with deep its whole content against its block sums and SHA-256 — and a
 * missing or damaged one is fetched again from the peer, verified on arrival
 * and put in place.  Runs on the puller's thread; the status shows progress.
 * 0, ARCA_E_NOTFOUND (no such peer), ARCA_E_EXISTS (one is already asked for
 * or running).
 */
int repl_repair_start(repl *r, const char *peer, bool deep);

/* Copies up to max peers' status; returns the number of peers. */
size_t repl_status(repl *r, struct repl_peer_status *out, size_t max);

#endif
