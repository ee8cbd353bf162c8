#include "iopool.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct mailbox {
    pthread_mutex_t lock;
    struct iojob *head, *tail;
    struct event *ev;
};

struct iopool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct iojob *head, *tail;
    bool stopping;
    size_t nthreads;
    pthread_t threads[];
};

static void mailbox_run(evutil_socket_t fd, short what, void *arg)
{
    struct mailbox *mb = arg;
    pthread_mutex_lock(&mb->lock);
    struct iojob *list = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    while (list) {
        struct iojob *next = list->next;
        list->next = NULL;
        list->done(list); /* may free list */
        list = next;
    }
}

int mailbox_new(struct event_base *base, struct mailbox **out)
{
    struct mailbox *mb = calloc(1, sizeof(*mb));
    if (!mb)
        return -ENOMEM;
    pthread_mutex_init(&mb->lock, NULL);
    mb->ev = event_new(base, -1, 0, mailbox_run, mb);
    if (!mb->ev) {
        pthread_mutex_destroy(&mb->lock);
        free(mb);
        return -ENOMEM;
    }
    *out = mb;
    return 0;
}

void mailbox_free(struct mailbox *mb)
{
    if (!mb)
        return;
    event_free(mb->ev);
    pthread_mutex_destroy(&mb->lock);
    free(mb);
}

static void mailbox_post(struct mailbox *mb, struct iojob *job)
{
    pthread_mutex_lock(&mb->lock);
    bool was_empty = mb->head == NULL;
    job->next = NULL;
    if (mb->tail)
        mb->tail->next = job;
    else
        mb->head = job;
    mb->tail = job;
    pthread_mutex_unlock(&mb->lock);
    /* event_active is safe from another thread once evthread_use_pthreads() ran. */
    if (was_empty)
        event_active(mb->ev, EV_READ, 0);
}

static void *pool_main(void *arg)
{
    iopool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->cond, &p->lock);
        if (p->stopping) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        struct iojob *job = p->head;
        p->head = job->next;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        job->work(job);
        mailbox_post(job->mbox, job);
    }
}

int iopool_new(size_t nthreads, iopool **out)
{
    iopool *p = calloc(1, sizeof(*p) + nthreads * sizeof(pthread_t));
    if (!p)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    for (size_t i = 0; i < nthreads; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_main, p) != 0) {
            p->nthreads = i;
            iopool_free(p);
            return -EAGAIN;
        }
        p->nthreads = i + 1;
    }
    *out = p;
    return 0;
}

void iopool_submit(iopool *p, struct iojob *job)
{
    pthread_mutex_lock(&p->lock);
    job->next = NULL;
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

void iopool_free(iopool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    p->head = p->tail = NULL;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
