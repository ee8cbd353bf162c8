#include "arca_err.h"

#include <string.h>

const char *arca_strerror(int code)
{
    switch (code) {
    case ARCA_OK: return "ok";
    case ARCA_E_INVALID: return "invalid input";
    case ARCA_E_NOTFOUND: return "not found";
    case ARCA_E_CONFLICT: return "conflict with stored content";
    case ARCA_E_CHECKSUM: return "checksum mismatch";
    case ARCA_E_CORRUPT: return "stored data is corrupt";
    case ARCA_E_DB: return "index database error";
    case ARCA_E_CRYPTO: return "cryptography library error";
    case ARCA_E_TOOBIG: return "over the configured limit";
    case ARCA_E_EXISTS: return "already exists";
    case ARCA_E_CONFIG: return "configuration error";
    case ARCA_E_LIMITED: return "rate limited";
    case ARCA_E_PRECONDITION: return "precondition unmet";
    default:
        if (code < 0 && code > -4096)
            return strerror(-code);
        return "unknown error";
    }
}
