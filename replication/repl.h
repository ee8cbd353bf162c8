/*
 * Replication between centres: not implemented yet (see README.md).
 * This header fixes the module's place in the layering: replication/ links
 * storage/ and common/ only, and server/ calls it.
 */
#ifndef ARCA_REPL_H
#define ARCA_REPL_H

/* The replication protocol version this build speaks; 0 = none. */
int repl_protocol_version(void);

#endif
