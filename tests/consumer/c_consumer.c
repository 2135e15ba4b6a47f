/* The C API from C through the installed package: a run-time stack string, one token, one
 * attention (the value itself), and a bad call reported as a status. Returns 0 when all holds. */
#include <kvc/kvc.h>

#include <math.h>
#include <string.h>

int c_consumer(void);

int c_consumer(void) {
  const kvc_shape shape = {1, 2, 1, 8};
  kvc_stack* stack = NULL;
  kvc_cache* cache = NULL;
  float k[8] = {0}, v[8], q[16] = {0}, out[16];
  for (int d = 0; d < 8; ++d) v[d] = (float)d;
  if (kvc_stack_parse("streaming:sinks=1,recent=3", &stack) != KVC_OK) return 1;
  const kvc_status created = kvc_cache_create(&shape, NULL, stack, &cache);
  kvc_stack_destroy(stack);
  if (created != KVC_OK) return 2;
  if (kvc_cache_append(cache, 0, 0, k, 8, v, 8) != KVC_OK) return 3;
  if (kvc_cache_attend(cache, 0, q, 16, out, 16) != KVC_OK) return 4;
  for (int i = 0; i < 16; ++i)
    if (fabsf(out[i] - v[i % 8]) > 1e-6f) return 5;
  if (kvc_cache_append(cache, 0, 0, k, 8, v, 8) != KVC_ERROR_INVALID_ARGUMENT) return 6;
  if (strstr(kvc_last_error(), "does not follow") == NULL) return 7;
  kvc_cache_destroy(cache);
  return 0;
}
