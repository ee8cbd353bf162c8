/*
 * Hybrid logical clock (Kulkarni et al.): 48 bits of physical milliseconds
 * and 16 bits of logical counter packed in a uint64_t, so timestamps compare
 * as integers.  Events carry an HLC time so that centres can order them
 * without synchronized wall clocks.  Thread-safe.
 */
#ifndef ARCA_HLC_H
#define ARCA_HLC_H

#include <stdint.h>

#define HLC_MS(t) ((t) >> 16)

/* A new timestamp for a local event, greater than every earlier one. */
uint64_t hlc_now(void);
/* Merges a timestamp received from another centre; later hlc_now() values exceed it. */
void hlc_observe(uint64_t remote);

#endif
