#include "hlc.h"

#include "util.h"

#include <pthread.h>

static pthread_mutex_t hlc_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t hlc_last;

uint64_t hlc_now(void)
{
    uint64_t phys = time_now_ms() << 16;
    pthread_mutex_lock(&hlc_lock);
    hlc_last = phys > hlc_last ? phys : hlc_last + 1;
    uint64_t t = hlc_last;
    pthread_mutex_unlock(&hlc_lock);
    return t;
}

void hlc_observe(uint64_t remote)
{
    pthread_mutex_lock(&hlc_lock);
    if (remote > hlc_last)
        hlc_last = remote;
    pthread_mutex_unlock(&hlc_lock);
}
