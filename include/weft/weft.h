/* weft/weft.h: the umbrella header. Anything not declared under include/weft/ is not API. */
#ifndef WEFT_WEFT_H
#define WEFT_WEFT_H

#include "common.h"
#include "error.h"
#include "version.h"
#include "ctx.h"
#include "chan.h"
#include "pump.h"
#include "pool.h"
#include "group.h"
#include "sem.h"
#include "pipeline.h"

#endif
