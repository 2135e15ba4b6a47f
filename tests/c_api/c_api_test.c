/* The C API from C11: a cache built from a stack string appends and attends like exact attention
 * written out here (the uncompressed stack over every token, StreamingLLM over its sinks and
 * recent window), a quantized stack stays close to it, and every error path returns its status
 * and a message naming the problem, with no abort. Exits non-zero on the first failure. */
#include "kvc/kvc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LAYERS = 2, QUERY_HEADS = 4, KV_HEADS = 2, HEAD_DIM = 8, TOKENS = 24, SINKS = 2, RECENT = 6 };
enum { KV_ROW = KV_HEADS * HEAD_DIM, Q_ROW = QUERY_HEADS * HEAD_DIM };

static int failures = 0;

#define CHECK(condition)                                                    \
  do {                                                                      \
    if (!(condition)) {                                                     \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #condition); \
      ++failures;                                                           \
    }                                                                       \
  } while (0)

/* A call that must fail with `status` and a message containing `word`. */
#define CHECK_FAILS(call, status, word)                                                           \
  do {                                                                                            \
    const kvc_status got_ = (call);                                                               \
    if (got_ != (status) || strstr(kvc_last_error(), (word)) == NULL) {                           \
      fprintf(stderr, "%s:%d: %s returned %s, message '%s'; expected %s mentioning '%s'\n", __FILE__, \
              __LINE__, #call, kvc_status_name(got_), kvc_last_error(), #status, (word));          \
      ++failures;                                                                                 \
    }                                                                                             \
  } while (0)

#define CHECK_OK(call)                                                                            \
  do {                                                                                            \
    const kvc_status got_ = (call);                                                               \
    if (got_ != KVC_OK) {                                                                         \
      fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #call, kvc_status_name(got_), \
              kvc_last_error());                                                                  \
      ++failures;                                                                                 \
    }                                                                                             \
  } while (0)

static float keys[LAYERS][TOKENS][KV_ROW], values[LAYERS][TOKENS][KV_ROW], queries[LAYERS][TOKENS][Q_ROW];

/* Values in [-1, 1) from a fixed linear congruential sequence. */
static float next_value(void) {
  static unsigned state = 12345u;
  state = state * 1664525u + 1013904223u;
  return (float)(state >> 8) / (float)(1u << 23) - 1.0f;
}

/* Softmax(q . k / sqrt(head_dim)) v of each query head over the tokens `first[i]` of `count`
 * (the query head's KV head is query_head / (QUERY_HEADS / KV_HEADS)). */
static void exact_attention(int layer, int t, const int* tokens, int count, float* out) {
  for (int qh = 0; qh < QUERY_HEADS; ++qh) {
    const int kv = qh / (QUERY_HEADS / KV_HEADS);
    const float* q = &queries[layer][t][qh * HEAD_DIM];
    double logits[TOKENS], max = -INFINITY, sum = 0.0;
    for (int i = 0; i < count; ++i) {
      double dot = 0.0;
      for (int d = 0; d < HEAD_DIM; ++d) dot += (double)q[d] * keys[layer][tokens[i]][kv * HEAD_DIM + d];
      logits[i] = dot / sqrt((double)HEAD_DIM);
      if (logits[i] > max) max = logits[i];
    }
    for (int i = 0; i < count; ++i) sum += exp(logits[i] - max);
    for (int d = 0; d < HEAD_DIM; ++d) {
      double acc = 0.0;
      for (int i = 0; i < count; ++i) acc += exp(logits[i] - max) / sum * values[layer][tokens[i]][kv * HEAD_DIM + d];
      out[qh * HEAD_DIM + d] = (float)acc;
    }
  }
}

static float max_difference(const float* a, const float* b, int n) {
  float worst = 0.0f;
  for (int i = 0; i < n; ++i)
    if (fabsf(a[i] - b[i]) > worst) worst = fabsf(a[i] - b[i]);
  return worst;
}

static kvc_cache* make_cache(const char* text) {
  const kvc_shape shape = {LAYERS, QUERY_HEADS, KV_HEADS, HEAD_DIM};
  const kvc_options options = {TOKENS};
  kvc_stack* stack = NULL;
  kvc_cache* cache = NULL;
  CHECK_OK(kvc_stack_parse(text, &stack));
  CHECK_OK(kvc_cache_create(&shape, &options, stack, &cache));
  kvc_stack_destroy(stack); /* the cache does not need it any more */
  return cache;
}

/* Decodes every token into an uncompressed, a StreamingLLM and an int8 cache: each attention
 * must be the exact attention over the tokens its stack keeps. */
static void test_decoding_matches_exact_attention(void) {
  kvc_cache* full = make_cache("full");
  kvc_cache* streaming = make_cache("streaming:sinks=2,recent=6");
  kvc_cache* int8 = make_cache("int8");
  if (!full || !streaming || !int8) return;
  float out[Q_ROW], expected[Q_ROW];
  int all[TOKENS], kept[TOKENS];
  float worst_full = 0.0f, worst_streaming = 0.0f, worst_int8 = 0.0f;
  for (int t = 0; t < TOKENS; ++t) {
    for (int layer = 0; layer < LAYERS; ++layer) {
      CHECK_OK(kvc_cache_append(full, layer, t, keys[layer][t], KV_ROW, values[layer][t], KV_ROW));
      CHECK_OK(kvc_cache_append(streaming, layer, t, keys[layer][t], KV_ROW, values[layer][t], KV_ROW));
      CHECK_OK(kvc_cache_append(int8, layer, t, keys[layer][t], KV_ROW, values[layer][t], KV_ROW));

      for (int i = 0; i <= t; ++i) all[i] = i;
      exact_attention(layer, t, all, t + 1, expected);
      CHECK_OK(kvc_cache_attend(full, layer, queries[layer][t], Q_ROW, out, Q_ROW));
      if (max_difference(out, expected, Q_ROW) > worst_full) worst_full = max_difference(out, expected, Q_ROW);
      CHECK_OK(kvc_cache_attend(int8, layer, queries[layer][t], Q_ROW, out, Q_ROW));
      if (max_difference(out, expected, Q_ROW) > worst_int8) worst_int8 = max_difference(out, expected, Q_ROW);

      /* StreamingLLM attends with the sinks and the RECENT tokens kept after the last step plus
       * the new one, then evicts down to SINKS + RECENT. */
      int count = 0;
      for (int i = 0; i <= t; ++i)
        if (i < SINKS || i >= t - RECENT) kept[count++] = i;
      exact_attention(layer, t, kept, count, expected);
      CHECK_OK(kvc_cache_attend(streaming, layer, queries[layer][t], Q_ROW, out, Q_ROW));
      if (max_difference(out, expected, Q_ROW) > worst_streaming)
        worst_streaming = max_difference(out, expected, Q_ROW);
      int32_t positions[TOKENS];
      size_t n = 0;
      CHECK_OK(kvc_cache_positions(streaming, layer, 1, positions, TOKENS, &n));
      size_t expected_n = 0;
      for (int i = 0; i <= t; ++i)
        if (i < SINKS || i > t - RECENT) CHECK(expected_n < n && positions[expected_n++] == i);
      CHECK(n == expected_n);
    }
  }
  printf("largest difference from exact attention: full %g, streaming %g, int8 %g\n", (double)worst_full,
         (double)worst_streaming, (double)worst_int8);
  CHECK(worst_full < 1e-5f);
  CHECK(worst_streaming < 1e-5f);
  CHECK(worst_int8 < 2e-2f);  /* 8-bit rows: ~1/255 of each group's range per element */
  CHECK(worst_int8 > 0.0f);   /* quantized rows differ, so the comparison can fail */

  size_t size = 0, tokens = 0, full_bytes = 0, int8_bytes = 0;
  CHECK_OK(kvc_cache_size(full, 1, 0, &size));
  CHECK(size == TOKENS);
  CHECK_OK(kvc_cache_size(streaming, 1, 0, &size));
  CHECK(size == SINKS + RECENT);
  CHECK_OK(kvc_cache_tokens(streaming, &tokens));
  CHECK(tokens == LAYERS * KV_HEADS * (SINKS + RECENT));
  CHECK_OK(kvc_cache_memory_bytes(full, &full_bytes));
  CHECK_OK(kvc_cache_memory_bytes(int8, &int8_bytes));
  CHECK(full_bytes >= (size_t)LAYERS * TOKENS * 2 * KV_ROW * sizeof(float));
  CHECK(int8_bytes < full_bytes);

  CHECK_OK(kvc_cache_clear(full));
  CHECK_OK(kvc_cache_tokens(full, &tokens));
  CHECK(tokens == 0);
  CHECK_OK(kvc_cache_append(full, 0, 0, keys[0][0], KV_ROW, values[0][0], KV_ROW)); /* a new sequence */
  kvc_cache_destroy(full);
  kvc_cache_destroy(streaming);
  kvc_cache_destroy(int8);
}

/* Prefill, attend the prompt's queries, compress_prompt: SnapKV keeps its budget per head. */
static void test_prompt_compression(void) {
  kvc_cache* cache = make_cache("snapkv:budget=8,window=4");
  if (!cache) return;
  float out[4 * Q_ROW];
  for (int layer = 0; layer < LAYERS; ++layer) {
    CHECK_OK(kvc_cache_prefill(cache, layer, 0, &keys[layer][0][0], 16 * KV_ROW, &values[layer][0][0], 16 * KV_ROW));
    CHECK_OK(kvc_cache_attend(cache, layer, &queries[layer][12][0], 4 * Q_ROW, out, 4 * Q_ROW));
  }
  CHECK_OK(kvc_cache_compress_prompt(cache));
  size_t size = 0;
  CHECK_OK(kvc_cache_size(cache, 0, 1, &size));
  CHECK(size == 8);
  CHECK_FAILS(kvc_cache_compress_prompt(cache), KVC_ERROR_INVALID_ARGUMENT, "already compressed");
  kvc_cache_destroy(cache);
}

static void test_text_outputs(void) {
  int major = -1, minor = -1, patch = -1;
  CHECK_OK(kvc_version(&major, &minor, &patch));
  CHECK(major >= 0 && minor >= 0 && patch >= 0 && major + minor + patch > 0);
  CHECK_FAILS(kvc_version(NULL, &minor, &patch), KVC_ERROR_INVALID_ARGUMENT, "major is NULL");

  size_t length = 0;
  CHECK_FAILS(kvc_components_describe(NULL, 0, &length), KVC_ERROR_BUFFER_TOO_SMALL, "needs");
  CHECK(length > 0);
  char* text = malloc(length + 1);
  CHECK_OK(kvc_components_describe(text, length + 1, &length));
  CHECK(strlen(text) == length && strstr(text, "h2o") && strstr(text, "snapkv"));
  free(text);
  CHECK_FAILS(kvc_components_describe(NULL, 4, &length), KVC_ERROR_INVALID_ARGUMENT, "buffer is NULL");
  CHECK_FAILS(kvc_components_describe(NULL, 0, NULL), KVC_ERROR_INVALID_ARGUMENT, "length is NULL");

  kvc_stack* stack = NULL;
  CHECK_OK(kvc_stack_parse(" h2o:budget=8 + int8:group=8 ", &stack));
  char small[8], described[256];
  const char* expected = "h2o:budget=8,recent=0.5,sinks=0+int8:group=8,value_bits=0,fast=0";
  CHECK_FAILS(kvc_stack_describe(stack, small, sizeof small, &length), KVC_ERROR_BUFFER_TOO_SMALL, "needs");
  CHECK(length == strlen(expected));
  CHECK_OK(kvc_stack_describe(stack, described, sizeof described, &length));
  CHECK(strcmp(described, expected) == 0);
  CHECK_FAILS(kvc_stack_describe(NULL, described, sizeof described, &length), KVC_ERROR_INVALID_ARGUMENT,
              "stack is NULL");
  kvc_stack_destroy(stack);
}

static void test_error_paths(void) {
  kvc_stack* stack = (kvc_stack*)&failures; /* must be reset to NULL on failure */
  CHECK_FAILS(kvc_stack_parse(NULL, &stack), KVC_ERROR_INVALID_ARGUMENT, "text is NULL");
  CHECK(stack == NULL);
  CHECK_FAILS(kvc_stack_parse("h2o", NULL), KVC_ERROR_INVALID_ARGUMENT, "stack is NULL");
  CHECK_FAILS(kvc_stack_parse("", &stack), KVC_ERROR_INVALID_ARGUMENT, "empty stack");
  CHECK_FAILS(kvc_stack_parse("h2o:budget=", &stack), KVC_ERROR_INVALID_ARGUMENT, "no value");
  CHECK_FAILS(kvc_stack_parse("nosuch", &stack), KVC_ERROR_INVALID_ARGUMENT, "unknown component 'nosuch'");
  CHECK_FAILS(kvc_stack_parse("h2o:budget=8,nope=1", &stack), KVC_ERROR_INVALID_ARGUMENT, "unknown parameter 'nope'");
  CHECK_FAILS(kvc_stack_parse("h2o", &stack), KVC_ERROR_INVALID_ARGUMENT, "needs a budget");
  CHECK_FAILS(kvc_stack_parse("h2o:budget=8+tova", &stack), KVC_ERROR_INVALID_ARGUMENT, "both selection");
  CHECK(stack == NULL);

  const kvc_shape shape = {LAYERS, QUERY_HEADS, KV_HEADS, HEAD_DIM};
  const kvc_shape bad_shape = {LAYERS, QUERY_HEADS, 3, HEAD_DIM};
  const kvc_shape empty_shape = {0, QUERY_HEADS, KV_HEADS, HEAD_DIM};
  kvc_cache* cache = (kvc_cache*)&failures;
  CHECK_OK(kvc_stack_parse("full", &stack));
  CHECK_FAILS(kvc_cache_create(&bad_shape, NULL, stack, &cache), KVC_ERROR_INVALID_ARGUMENT, "multiple of kv_heads");
  CHECK(cache == NULL);
  CHECK_FAILS(kvc_cache_create(&empty_shape, NULL, stack, &cache), KVC_ERROR_INVALID_ARGUMENT, "layers must be > 0");
  CHECK_FAILS(kvc_cache_create(NULL, NULL, stack, &cache), KVC_ERROR_INVALID_ARGUMENT, "shape is NULL");
  CHECK_FAILS(kvc_cache_create(&shape, NULL, NULL, &cache), KVC_ERROR_INVALID_ARGUMENT, "stack is NULL");
  CHECK_FAILS(kvc_cache_create(&shape, NULL, stack, NULL), KVC_ERROR_INVALID_ARGUMENT, "cache is NULL");
  const kvc_options huge = {(size_t)-1 / 2};
  CHECK_FAILS(kvc_cache_create(&shape, &huge, stack, &cache), KVC_ERROR_INVALID_ARGUMENT, "capacity");
  kvc_stack_destroy(stack);
  CHECK_OK(kvc_stack_parse("svd:rank=4", &stack));
  CHECK_FAILS(kvc_cache_create(&shape, NULL, stack, &cache), KVC_ERROR_INVALID_ARGUMENT, "calibration");
  kvc_stack_destroy(stack);

  cache = make_cache("full");
  if (!cache) return;
  float q[2 * Q_ROW] = {0}, out[2 * Q_ROW];
  const float* k = keys[0][0];
  const float* v = values[0][0];
  CHECK_FAILS(kvc_cache_attend(cache, 0, q, Q_ROW, out, Q_ROW), KVC_ERROR_INVALID_ARGUMENT, "holds 0 tokens");
  CHECK_FAILS(kvc_cache_append(NULL, 0, 0, k, KV_ROW, v, KV_ROW), KVC_ERROR_INVALID_ARGUMENT, "cache is NULL");
  CHECK_FAILS(kvc_cache_append(cache, LAYERS, 0, k, KV_ROW, v, KV_ROW), KVC_ERROR_INVALID_ARGUMENT, "layer 2 out of range");
  CHECK_FAILS(kvc_cache_append(cache, 0, 0, k, KV_ROW - 1, v, KV_ROW), KVC_ERROR_INVALID_ARGUMENT, "keys hold 15 floats");
  CHECK_FAILS(kvc_cache_append(cache, 0, 0, k, KV_ROW, v, KV_ROW + 1), KVC_ERROR_INVALID_ARGUMENT, "values hold 17 floats");
  CHECK_FAILS(kvc_cache_append(cache, 0, 0, NULL, KV_ROW, v, KV_ROW), KVC_ERROR_INVALID_ARGUMENT, "keys is NULL");
  float bad[KV_ROW];
  memcpy(bad, k, sizeof bad);
  bad[3] = NAN;
  CHECK_FAILS(kvc_cache_append(cache, 0, 0, bad, KV_ROW, v, KV_ROW), KVC_ERROR_INVALID_ARGUMENT, "keys[3]");
  bad[3] = INFINITY;
  CHECK_FAILS(kvc_cache_append(cache, 0, 0, k, KV_ROW, bad, KV_ROW), KVC_ERROR_INVALID_ARGUMENT, "values[3]");
  CHECK_OK(kvc_cache_append(cache, 0, 5, k, KV_ROW, v, KV_ROW));
  CHECK_FAILS(kvc_cache_append(cache, 0, 5, k, KV_ROW, v, KV_ROW), KVC_ERROR_INVALID_ARGUMENT,
              "position 5 does not follow");
  CHECK_FAILS(kvc_cache_prefill(cache, 0, 3, k, KV_ROW, v, KV_ROW), KVC_ERROR_INVALID_ARGUMENT,
              "position 3 does not follow");
  CHECK_FAILS(kvc_cache_prefill(cache, 0, 6, k, KV_ROW, v, 0), KVC_ERROR_INVALID_ARGUMENT, "values hold 0");
  CHECK_FAILS(kvc_cache_prefill(cache, 0, 6, NULL, 2, v, 2), KVC_ERROR_INVALID_ARGUMENT, "keys is NULL");

  CHECK_FAILS(kvc_cache_attend(cache, 0, q, Q_ROW - 1, out, Q_ROW - 1), KVC_ERROR_INVALID_ARGUMENT,
              "positive multiple");
  CHECK_FAILS(kvc_cache_attend(cache, 0, q, Q_ROW, out, 2 * Q_ROW), KVC_ERROR_INVALID_ARGUMENT, "same size");
  CHECK_FAILS(kvc_cache_attend(cache, 0, q, Q_ROW, NULL, Q_ROW), KVC_ERROR_INVALID_ARGUMENT, "out is NULL");
  CHECK_FAILS(kvc_cache_attend(cache, 0, q, 2 * Q_ROW, out, 2 * Q_ROW), KVC_ERROR_INVALID_ARGUMENT,
              "2 queries but KV head 0 of layer 0 holds 1 tokens");
  CHECK_FAILS(kvc_cache_attend(cache, 9, q, Q_ROW, out, Q_ROW), KVC_ERROR_INVALID_ARGUMENT, "layer 9 out of range");
  q[1] = NAN;
  CHECK_FAILS(kvc_cache_attend(cache, 0, q, Q_ROW, out, Q_ROW), KVC_ERROR_INVALID_ARGUMENT, "queries[1]");
  q[1] = 0.0f;
  CHECK_OK(kvc_cache_attend(cache, 0, q, Q_ROW, out, Q_ROW));

  size_t n = 0;
  int32_t positions[1];
  CHECK_FAILS(kvc_cache_size(cache, 0, KV_HEADS, &n), KVC_ERROR_INVALID_ARGUMENT, "out of range");
  CHECK_FAILS(kvc_cache_size(cache, LAYERS, 0, &n), KVC_ERROR_INVALID_ARGUMENT, "out of range");
  CHECK_FAILS(kvc_cache_size(cache, 0, 0, NULL), KVC_ERROR_INVALID_ARGUMENT, "size is NULL");
  CHECK_FAILS(kvc_cache_positions(cache, 0, 0, NULL, 0, &n), KVC_ERROR_BUFFER_TOO_SMALL, "1 positions");
  CHECK(n == 1);
  CHECK_OK(kvc_cache_positions(cache, 0, 0, positions, 1, &n));
  CHECK(positions[0] == 5);
  CHECK_FAILS(kvc_cache_positions(cache, 0, 0, NULL, 1, &n), KVC_ERROR_INVALID_ARGUMENT, "buffer is NULL");
  CHECK_FAILS(kvc_cache_positions(cache, 0, 0, positions, 1, NULL), KVC_ERROR_INVALID_ARGUMENT, "count is NULL");
  CHECK_FAILS(kvc_cache_tokens(NULL, &n), KVC_ERROR_INVALID_ARGUMENT, "cache is NULL");
  CHECK_FAILS(kvc_cache_tokens(cache, NULL), KVC_ERROR_INVALID_ARGUMENT, "tokens is NULL");
  CHECK_FAILS(kvc_cache_memory_bytes(cache, NULL), KVC_ERROR_INVALID_ARGUMENT, "bytes is NULL");
  CHECK_FAILS(kvc_cache_clear(NULL), KVC_ERROR_INVALID_ARGUMENT, "cache is NULL");
  CHECK_FAILS(kvc_cache_compress_prompt(NULL), KVC_ERROR_INVALID_ARGUMENT, "cache is NULL");
  CHECK_OK(kvc_cache_compress_prompt(cache)); /* no selection: nothing to do */
  CHECK_OK(kvc_cache_tokens(cache, &n));
  CHECK(n == KV_HEADS); /* one token in each head of layer 0: every failed call left the cache as it was */
  CHECK(strcmp(kvc_status_name(KVC_ERROR_OUT_OF_MEMORY), "KVC_ERROR_OUT_OF_MEMORY") == 0);
  CHECK(strcmp(kvc_status_name((kvc_status)42), "unknown status") == 0);
  CHECK_OK(kvc_cache_destroy(cache));
  CHECK_OK(kvc_cache_destroy(NULL));
  CHECK_OK(kvc_stack_destroy(NULL));
}

int main(void) {
  for (int layer = 0; layer < LAYERS; ++layer)
    for (int t = 0; t < TOKENS; ++t) {
      for (int i = 0; i < KV_ROW; ++i) keys[layer][t][i] = next_value(), values[layer][t][i] = next_value();
      for (int i = 0; i < Q_ROW; ++i) queries[layer][t][i] = next_value();
    }
  test_decoding_matches_exact_attention();
  test_prompt_compression();
  test_text_outputs();
  test_error_paths();
  if (failures) fprintf(stderr, "%d checks failed\n", failures);
  else printf("c_api_test: all checks passed\n");
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
