/* kvcompress C API: run-time policy stacks behind opaque handles, for C programs and the FFI of
 * other languages (docs/c-api.md).
 *
 * Handles: a kvc_stack is a parsed and checked stack string ("h2o:budget=64+int4"); a kvc_cache
 * is a KV cache of one sequence built from a shape, options and a stack. There is no pool handle
 * yet: run-time stacks build contiguous caches, and a shared block pool (paged caches) comes with
 * the serving work.
 *
 * Errors: every function returns a kvc_status (except kvc_last_error and kvc_status_name). On a
 * status other than KVC_OK, kvc_last_error() returns a message saying which argument was wrong
 * and why; nothing was changed, except where a function says otherwise. No C++ exception and no
 * abort crosses this interface for bad arguments: null pointers, sizes, layers, positions,
 * non-finite values and stack strings are all checked and reported.
 *
 * Threads: a kvc_stack is immutable and may be used by any number of threads at once; a
 * kvc_cache is used by one thread at a time (different caches on different threads are fine).
 * kvc_last_error() is per thread.
 *
 * Arrays are row-major floats: one token's keys or values are [kv_heads][head_dim]; queries and
 * attention outputs are [n_queries][query_heads][head_dim]. Counts are numbers of floats. */
#ifndef KVC_KVC_H
#define KVC_KVC_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define KVC_C_API __attribute__((visibility("default")))
#else
#define KVC_C_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kvc_status {
  KVC_OK = 0,
  /* A null pointer, a size or index out of range, a non-finite value, a position that does not
   * follow, a malformed or invalid stack string, a bad shape or a cache too large to build. */
  KVC_ERROR_INVALID_ARGUMENT = 1,
  /* Memory ran out during an append; the cache is as it was (free memory, then retry). */
  KVC_ERROR_OUT_OF_MEMORY = 2,
  /* An output buffer is too short; its required length was still written. */
  KVC_ERROR_BUFFER_TOO_SMALL = 3,
  /* An unexpected failure inside the library (a defect: please report the message). */
  KVC_ERROR_INTERNAL = 4,
  /* Never returned: makes every int32 value a valid kvc_status in C++ too, so a status that a
   * newer library returns, or any int a caller casts, may be passed to kvc_status_name. */
  KVC_STATUS_MAX_ENUM = 0x7fffffff
} kvc_status;

typedef struct kvc_stack kvc_stack;
typedef struct kvc_cache kvc_cache;

/* The attention geometry of a model: query_heads is a multiple of kv_heads (GQA groups). */
typedef struct kvc_shape {
  size_t layers;
  size_t query_heads;
  size_t kv_heads;
  size_t head_dim;
} kvc_shape;

typedef struct kvc_options {
  /* The longest sequence the cache will hold. An uncompressed stack reserves this many tokens
   * per head up front (0: grow on demand); a stack with a budget ignores it. */
  size_t context;
} kvc_options;

/* The message of the last call in this thread that did not return KVC_OK ("" if none). The
 * pointer stays valid until the next failing call in this thread. */
KVC_C_API const char* kvc_last_error(void);
/* "KVC_OK", "KVC_ERROR_INVALID_ARGUMENT", ...; "unknown status" for other values. */
KVC_C_API const char* kvc_status_name(kvc_status status);

/* The library's version (major.minor.patch). */
KVC_C_API kvc_status kvc_version(int* major, int* minor, int* patch);

/* Text outputs follow snprintf: `length` receives the text's length without the terminating
 * NUL; the text and a NUL are written when capacity > length, else KVC_ERROR_BUFFER_TOO_SMALL
 * (buffer may be NULL when capacity is 0, to ask for the length). */

/* One line per registered stack component: name, family, parameters with defaults, help. */
KVC_C_API kvc_status kvc_components_describe(char* buffer, size_t capacity, size_t* length);

/* Parses and checks a stack string (NUL-terminated); *stack receives a new handle. */
KVC_C_API kvc_status kvc_stack_parse(const char* text, kvc_stack** stack);
/* The stack with every parameter written out, defaults included, e.g.
 * "h2o:budget=64,recent=0.5+int4:group=0,value_bits=0,fast=0". */
KVC_C_API kvc_status kvc_stack_describe(const kvc_stack* stack, char* buffer, size_t capacity, size_t* length);
/* Destroys a stack (NULL is accepted). Caches built from it do not need it any more. */
KVC_C_API kvc_status kvc_stack_destroy(kvc_stack* stack);

/* Builds an empty cache; options may be NULL (context 0). *cache receives a new handle. */
KVC_C_API kvc_status kvc_cache_create(const kvc_shape* shape, const kvc_options* options, const kvc_stack* stack,
                                      kvc_cache** cache);
/* Destroys a cache (NULL is accepted). */
KVC_C_API kvc_status kvc_cache_destroy(kvc_cache* cache);

/* Appends one token of `layer` at `position` (after the layer's last one): keys and values hold
 * kv_heads * head_dim floats each, keys already rotated. May compress the layer's heads. */
KVC_C_API kvc_status kvc_cache_append(kvc_cache* cache, size_t layer, int32_t position, const float* keys,
                                      size_t keys_count, const float* values, size_t values_count);
/* Appends n tokens of `layer` at positions first_position, first_position + 1, ...: keys and
 * values hold n * kv_heads * head_dim floats each. */
KVC_C_API kvc_status kvc_cache_prefill(kvc_cache* cache, size_t layer, int32_t first_position, const float* keys,
                                       size_t keys_count, const float* values, size_t values_count);
/* Attention of the last n tokens appended to `layer` (causal among themselves), n = number of
 * query tokens: queries and out hold n * query_heads * head_dim floats and do not overlap. */
KVC_C_API kvc_status kvc_cache_attend(kvc_cache* cache, size_t layer, const float* queries, size_t queries_count,
                                      float* out, size_t out_count);
/* Compresses the prompt of every layer once, after it was prefilled and attended (what SnapKV
 * needs); does nothing for a stack without a selection. On failure some layers may already be
 * compressed. */
KVC_C_API kvc_status kvc_cache_compress_prompt(kvc_cache* cache);
/* Empties the cache for a new sequence, keeping its memory. */
KVC_C_API kvc_status kvc_cache_clear(kvc_cache* cache);

/* Tokens held by one (layer, KV head). */
KVC_C_API kvc_status kvc_cache_size(const kvc_cache* cache, size_t layer, size_t kv_head, size_t* size);
/* The positions held by one (layer, KV head), increasing: *count receives their number; they
 * are written when capacity >= *count, else KVC_ERROR_BUFFER_TOO_SMALL (buffer may be NULL
 * when capacity is 0). */
KVC_C_API kvc_status kvc_cache_positions(const kvc_cache* cache, size_t layer, size_t kv_head, int32_t* buffer,
                                         size_t capacity, size_t* count);
/* Tokens held, summed over every (layer, KV head). */
KVC_C_API kvc_status kvc_cache_tokens(const kvc_cache* cache, size_t* tokens);
/* Bytes of the cache's storage: rows, positions and policy state. */
KVC_C_API kvc_status kvc_cache_memory_bytes(const kvc_cache* cache, size_t* bytes);

#ifdef __cplusplus
}
#endif

#endif /* KVC_KVC_H */
