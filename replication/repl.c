#include "repl.h"

int repl_protocol_version(void)
{
    return 0;
}
