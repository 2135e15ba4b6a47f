#pragma once
// kvcompress: composable KV-cache compression. One include for the container, its layouts and
// every policy.
#include "kvc/core/kv_cache.hpp"
#include "kvc/core/reference_attention.hpp"
#include "kvc/version.hpp"

#include "kvc/budget/ada_kv.hpp"
#include "kvc/budget/pyramid_kv.hpp"
#include "kvc/budget/pyramid_kv_prompt.hpp"
#include "kvc/budget/uniform.hpp"
#include "kvc/lowrank/svd.hpp"
#include "kvc/merge/d2o.hpp"
#include "kvc/quant/fp8.hpp"
#include "kvc/quant/kivi.hpp"
#include "kvc/quant/per_token.hpp"
#include "kvc/select/h2o.hpp"
#include "kvc/select/knorm.hpp"
#include "kvc/select/snapkv.hpp"
#include "kvc/select/streaming_llm.hpp"
#include "kvc/select/tova.hpp"
