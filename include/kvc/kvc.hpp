#pragma once
// kvcompress: composable KV-cache compression. One include for the container, its layouts and
// every policy.
#include "kvc/core/kv_cache.hpp"
#include "kvc/core/reference_attention.hpp"
