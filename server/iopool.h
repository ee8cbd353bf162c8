/*
 * The I/O pool: threads that hash, write, fsync and commit, so that no event
 * loop ever waits for a disk.  A job's work() runs on a pool thread; its
 * done() then runs on the event loop (mailbox) the job was submitted for.
 *
 * Ownership: the job struct belongs to the submitter, who must keep it alive
 * until done() has run.  If the pool is shut down before a queued job runs,
 * the job is dropped: neither work() nor done() runs (iopool_free reports
 * nothing; the owner frees its jobs with its connections).
 */
#ifndef ARCA_IOPOOL_H
#define ARCA_IOPOOL_H

#include <stddef.h>

struct event_base;
struct mailbox;
typedef struct iopool iopool;

struct iojob {
    void (*work)(struct iojob *job);  /* on a pool thread */
    void (*done)(struct iojob *job);  /* on the mailbox's event loop */
    struct mailbox *mbox;
    struct iojob *next;               /* internal */
};

/* A per-event-loop queue of finished jobs. */
int mailbox_new(struct event_base *base, struct mailbox **out);
void mailbox_free(struct mailbox *mb);

int iopool_new(size_t nthreads, iopool **out);
/* Queues job; never fails.  job->mbox must be set. */
void iopool_submit(iopool *p, struct iojob *job);
/* Lets running jobs finish, drops queued ones, joins the threads.  NULL is a no-op. */
void iopool_free(iopool *p);

#endif
