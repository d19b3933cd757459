/* weft-run without weft's JetStream module (libnats was not found when weft was built): --submit,
 * --worker and --collect say so and exit 255. */
#include "weft-run.h"

int wr_dist_main(wr_app *a) {
  wr_msg("--%s: this weft-run was built without NATS JetStream support (weft's jetstream module needs the "
         "NATS C client: apt install libnats-dev, then rebuild weft)",
         a->o.mode == WR_SUBMIT ? "submit" : a->o.mode == WR_WORKER ? "worker" : "collect");
  return WR_EXIT_ERROR;
}
