/* weft/version.h: the version's single source of truth (CMake reads the three defines below). */
#ifndef WEFT_VERSION_H
#define WEFT_VERSION_H

#include "common.h"

#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 2
#define WEFT_VERSION_PATCH 0
#define WEFT_VERSION_HEX ((WEFT_VERSION_MAJOR << 16) | (WEFT_VERSION_MINOR << 8) | WEFT_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* Returns the run-time library version as "MAJOR.MINOR.PATCH" (static storage). Thread safety: any thread. */
WEFT_API const char *weft_version_string(void);
/* Returns the run-time library version as WEFT_VERSION_HEX would spell it. Thread safety: any thread. */
WEFT_API unsigned weft_version(void);

#ifdef __cplusplus
}
#endif
#endif
