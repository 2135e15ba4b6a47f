#pragma once
// Per-channel key storage: the container capability behind KIVI's keys, for any quantization
// policy whose keys are quantized per channel over groups of tokens (its channel_keys() returns
// an enabled ChannelKeys). A head is
//
//   [frozen groups: G tokens each, encoded once | tail: the newest tokens in full precision]
//
// * Frozen keys: each token's codes sit in the layout's key row (code bytes only, packed like a
//   q8/q4/q2 row); each group's key_dim {f16 scale, f16 min} pairs, one per channel over its G
//   tokens (kernels::encode_channels), sit here, back to back. Frozen values are rows of the
//   policy's value format in the layout's value rows.
// * Tail keys and values: rows of the cache's element type (f32, f16, bf16) held here, R + G
//   rows reserved per head.
// * On append, a tail that already holds R tokens freezes its oldest floor(tail / G) * G tokens
//   first (R a multiple of G: all of them, KIVI's rule), so the tail holds 1..R tokens when
//   attention runs. A group is encoded once and never re-quantized by later appends.
// * Eviction (compression, off the hot path of appends): groups before the first evicted token
//   keep their codes bitwise; the kept frozen tokens after it are decoded and re-encoded into
//   full groups from the oldest, and a trailing partial group returns to the tail (its tokens
//   keep their dequantized values). So every frozen group is full and attention needs no
//   tombstones. Rewriting a frozen row (merging) re-encodes its group.
// * Attention: one pass over the frozen rows (kernels::Table::attend_channels: the scale folded
//   into the query per group) and one over the tail (Table::attend), sharing the online-softmax
//   state and the logits row.
//
// Bytes per head: key_dim * bits / 8 per token, 4 * key_dim per group, (R + G) tail rows of keys
// and values in the element type, plus the value rows the layout holds.
#include "kvc/core/checked.hpp"
#include "kvc/core/head_view.hpp"
#include "kvc/kernels/half.hpp"
#include "kvc/kernels/reference.hpp"
#include "kvc/kernels/table.hpp"

#include <algorithm>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

namespace kvc {

// What a quantization policy's channel_keys() asks of the container.
struct ChannelKeys {
  kernels::Dtype dtype = kernels::Dtype::f32;  // the key codes: q8, q4 or q2 when enabled
  std::size_t group = 0;                       // G, tokens per frozen group; 0: per-token key rows
  std::size_t residual = 0;                    // R, the tail that triggers a freeze; a multiple of G

  [[nodiscard]] bool enabled() const noexcept { return group != 0; }
};

namespace detail {

class ChannelStore {
 public:
  struct Head;

  ChannelStore() = default;
  // fork(): the copy has its own parameters, tails and scratch.
  ChannelStore(const ChannelStore& other)
      : config_(other.config_ ? std::make_unique<Config>(*other.config_) : nullptr), heads_(other.heads_) {
    for (Head& h : heads_) h.config = config_.get();
  }
  ChannelStore& operator=(const ChannelStore&) = delete;
  ChannelStore(ChannelStore&&) noexcept = default;
  ChannelStore& operator=(ChannelStore&&) noexcept = default;
  ~ChannelStore() = default;

  // Validates the request against the stored dims and sizes the heads and the scratch.
  void configure(const ChannelKeys& keys, const kernels::Table& table, kernels::Dtype element,
                 kernels::RowFormat value_format, std::size_t key_dim, std::size_t value_dim, std::size_t heads) {
    constexpr const char* where = "kvc::KVCache";
    if (!kernels::is_quantized(keys.dtype))
      fail(where, "per-channel keys need an integer format (int8, int4, int2), not {}", kernels::dtype_name(keys.dtype));
    if (keys.group > kernels::ref::kMaxDim)
      fail(where, "per-channel key group of {} tokens exceeds {}", keys.group, kernels::ref::kMaxDim);
    if (keys.residual == 0 || keys.residual % keys.group != 0)
      fail(where, "per-channel key residual {} must be a positive multiple of the group {}", keys.residual, keys.group);
    if (key_dim % 8 != 0) fail(where, "per-channel keys need a stored key dim that is a multiple of 8 (got {})", key_dim);
    auto c = std::make_unique<Config>();
    c->table = &table;
    c->keys = keys;
    c->tail = {element, 0};
    c->value = value_format;
    c->key_dim = key_dim;
    c->value_dim = value_dim;
    c->code_bytes = kernels::code_bytes({keys.dtype, 0}, key_dim);
    c->param_bytes = key_dim * kernels::kGroupParamBytes;
    c->tail_key_bytes = kernels::row_bytes(c->tail, key_dim);
    c->tail_value_bytes = kernels::row_bytes(c->tail, value_dim);
    const std::size_t rows = checked_add(keys.residual, keys.group, where, "residual + group");
    heads_.resize(heads);
    for (Head& h : heads_) {
      h.config = c.get();
      h.tail_keys.resize(checked_mul(rows, c->tail_key_bytes, where, "tail key bytes"));
      h.tail_values.resize(checked_mul(rows, c->tail_value_bytes, where, "tail value bytes"));
    }
    c->floats.resize(checked_mul(rows, std::max(key_dim, value_dim), where, "channel scratch"));
    c->block.resize(kernels::channel_block_bytes(keys.dtype, key_dim, keys.group));
    c->new_tail_keys.resize(rows * c->tail_key_bytes);
    c->new_tail_values.resize(rows * c->tail_value_bytes);
    config_ = std::move(c);
  }

  [[nodiscard]] bool enabled() const noexcept { return config_ != nullptr; }
  [[nodiscard]] Head& head(std::size_t i) noexcept { return heads_[i]; }
  [[nodiscard]] std::size_t frozen(std::size_t head) const noexcept { return heads_[head].frozen; }
  // The first layout row a compaction from token `first_moved` writes: the start of its group.
  [[nodiscard]] std::size_t first_written(std::size_t first_moved) const noexcept {
    return first_moved / config_->keys.group * config_->keys.group;
  }

  // Room for the parameters of every group of `tokens` tokens: the hot path then never allocates.
  void reserve(std::size_t head, std::size_t tokens) {
    heads_[head].params.reserve(tokens / config_->keys.group * config_->param_bytes);
  }

  void clear() noexcept {
    for (Head& h : heads_) {
      h.frozen = h.tail = 0;
      h.params.clear();
    }
  }

  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    std::size_t bytes = 0;
    for (const Head& h : heads_) bytes += h.params.capacity() + h.tail_keys.size() + h.tail_values.size();
    return bytes;
  }
  [[nodiscard]] std::size_t workspace_bytes() const noexcept {
    if (!config_) return 0;
    const Config& c = *config_;
    return c.floats.capacity() * sizeof(float) + c.block.size() + c.new_tail_keys.size() + c.new_tail_values.size();
  }

  // Appends the newest token of a head (row frozen + tail of the layout), freezing first if the
  // tail is full. Hot path: no allocation (reserve() made room for the groups).
  void append(std::size_t head, const HeadView::Access& rows, std::size_t row, const float* k, const float* v) noexcept {
    Head& h = heads_[head];
    const Config& c = *config_;
    KVC_CONTRACT(row == h.frozen + h.tail, "per-channel keys: rows are appended in order");
    if (h.tail >= c.keys.residual) freeze(h, rows, h.tail / c.keys.group * c.keys.group);
    c.table->encode_rows(c.tail, c.key_dim, k, 0, 1, tail_key(h, h.tail), 0);
    c.table->encode_rows(c.tail, c.value_dim, v, 0, 1, tail_value(h, h.tail), 0);
    ++h.tail;
  }

  // Attention over the head's rows: `args` as for a per-token cache (its segments are the
  // layout's rows, k_format {codes, 0}); the frozen rows and the tail in two kernel calls.
  void attend(std::size_t head, const kernels::AttendArgs& args) const noexcept {
    const Head& h = heads_[head];
    const Config& c = *config_;
    if (h.frozen > 0 && args.rows > 0) {
      kernels::AttendArgs a = args;
      a.rows = std::min(args.rows, h.frozen);
      c.table->attend_channels(a, h.params.data(), c.keys.group);
    }
    if (args.rows > h.frozen) {
      const kernels::Segment tail{h.tail_keys.data(), h.tail_values.data(), h.tail};
      kernels::AttendArgs a = args;
      a.segments = &tail;
      a.n_segments = 1;
      a.rows = args.rows - h.frozen;
      a.k_format = a.v_format = c.tail;
      a.k_stride = c.tail_key_bytes;
      a.v_stride = c.tail_value_bytes;
      if (a.logits != nullptr) a.logits += h.frozen;
      c.table->attend(a);
    }
  }

  // Compacts a head to the kept tokens `keep` (ascending, as the selection returned them)
  // before the container moves the layout's value rows (it must not move key rows). See the
  // header comment for the rule; compression time, no allocation.
  void compact(std::size_t head, const HeadView::Access& rows, std::span<const std::uint32_t> keep) noexcept {
    Head& h = heads_[head];
    Config& c = *config_;
    const std::size_t g_rows = c.keys.group, kept = keep.size();
    const auto kept_frozen = static_cast<std::size_t>(
        std::lower_bound(keep.begin(), keep.end(), static_cast<std::uint32_t>(h.frozen)) - keep.begin());
    const std::size_t new_frozen = kept_frozen / g_rows * g_rows;
    std::size_t first = 0;  // the first token that moves: groups before it stay bitwise
    while (first < kept && keep[first] == first) ++first;
    // New group g reads old tokens keep[gG..] >= gG, in old groups >= g, so groups are rewritten
    // in order in place (old group g is read before it is overwritten).
    for (std::size_t g = first / g_rows; g * g_rows < new_frozen; ++g) {
      for (std::size_t t = 0; t < g_rows; ++t)
        load_frozen_key(h, rows, keep[g * g_rows + t], c.floats.data() + t * c.key_dim);
      write_group(h, rows, g, g * g_rows, c.floats.data());
    }
    // The new tail: returning frozen tokens (dequantized), then the kept tail tokens.
    float* k = c.floats.data();
    float* v = c.floats.data() + c.key_dim;
    for (std::size_t j = new_frozen; j < kept; ++j) {
      std::byte* nk = c.new_tail_keys.data() + (j - new_frozen) * c.tail_key_bytes;
      std::byte* nv = c.new_tail_values.data() + (j - new_frozen) * c.tail_value_bytes;
      if (keep[j] < h.frozen) {
        load_frozen_key(h, rows, keep[j], k);
        c.table->decode_rows(c.value, c.value_dim, rows.value_row(rows.store, keep[j]), 0, 1, v, 0);
        c.table->encode_rows(c.tail, c.key_dim, k, 0, 1, nk, 0);
        c.table->encode_rows(c.tail, c.value_dim, v, 0, 1, nv, 0);
      } else {
        std::memcpy(nk, tail_key(h, keep[j] - h.frozen), c.tail_key_bytes);
        std::memcpy(nv, tail_value(h, keep[j] - h.frozen), c.tail_value_bytes);
      }
    }
    h.params.resize(new_frozen / g_rows * c.param_bytes);  // shrinks: no allocation
    h.frozen = new_frozen;
    h.tail = kept - new_frozen;
    std::memcpy(h.tail_keys.data(), c.new_tail_keys.data(), h.tail * c.tail_key_bytes);
    std::memcpy(h.tail_values.data(), c.new_tail_values.data(), h.tail * c.tail_value_bytes);
  }

  // HeadView's row access for heads of this storage (HeadView::Access::load / store).
  static void load_row(const HeadView::Access& rows, bool key, std::size_t i, float* out) noexcept {
    const Head& h = *static_cast<const Head*>(rows.context);
    const Config& c = *h.config;
    if (i >= h.frozen) {
      const std::byte* src = key ? tail_key(h, i - h.frozen) : tail_value(h, i - h.frozen);
      c.table->decode_rows(c.tail, key ? c.key_dim : c.value_dim, src, 0, 1, out, 0);
    } else if (key) {
      load_frozen_key(h, rows, i, out);
    } else {
      c.table->decode_rows(c.value, c.value_dim, rows.value_row(rows.store, i), 0, 1, out, 0);
    }
  }
  // A frozen key is rewritten by re-encoding its group with the new row (the group's other
  // tokens are rounded again); values and tail rows are encoded in place.
  static void store_row(const HeadView::Access& rows, bool key, std::size_t i, const float* row) noexcept {
    Head& h = *static_cast<Head*>(const_cast<void*>(rows.context));
    Config& c = *h.config;
    if (i >= h.frozen) {
      std::byte* dst = key ? tail_key(h, i - h.frozen) : tail_value(h, i - h.frozen);
      c.table->encode_rows(c.tail, key ? c.key_dim : c.value_dim, row, 0, 1, dst, 0);
    } else if (key) {
      const std::size_t g = i / c.keys.group, first = g * c.keys.group;
      for (std::size_t t = 0; t < c.keys.group; ++t)
        if (first + t == i)
          std::copy_n(row, c.key_dim, c.floats.data() + t * c.key_dim);
        else
          load_frozen_key(h, rows, first + t, c.floats.data() + t * c.key_dim);
      write_group(h, rows, g, first, c.floats.data());
    } else {
      c.table->encode_rows(c.value, c.value_dim, row, 0, 1, rows.value_row(rows.store, i), 0);
    }
  }

  struct Config {
    const kernels::Table* table = nullptr;
    ChannelKeys keys;
    kernels::RowFormat tail{}, value{};
    std::size_t key_dim = 0, value_dim = 0, code_bytes = 0, param_bytes = 0, tail_key_bytes = 0, tail_value_bytes = 0;
    // Scratch: (R + G) rows of floats, one group's block, a new tail while compacting.
    std::vector<float> floats;
    std::vector<std::byte> block, new_tail_keys, new_tail_values;
  };

  struct Head {
    Config* config = nullptr;
    std::size_t frozen = 0;  // tokens in frozen groups, a multiple of G
    std::size_t tail = 0;    // tokens in the tail
    std::vector<std::byte> params;  // frozen / G groups of key_dim {scale, min} pairs
    std::vector<std::byte> tail_keys, tail_values;  // R + G rows each
  };

 private:
  static std::byte* tail_key(Head& h, std::size_t t) noexcept { return h.tail_keys.data() + t * h.config->tail_key_bytes; }
  static std::byte* tail_value(Head& h, std::size_t t) noexcept {
    return h.tail_values.data() + t * h.config->tail_value_bytes;
  }
  static const std::byte* tail_key(const Head& h, std::size_t t) noexcept {
    return h.tail_keys.data() + t * h.config->tail_key_bytes;
  }
  static const std::byte* tail_value(const Head& h, std::size_t t) noexcept {
    return h.tail_values.data() + t * h.config->tail_value_bytes;
  }

  // Token i (< frozen) of a head: its codes with its group's per-channel pairs, as
  // decode_channels decodes them.
  static void load_frozen_key(const Head& h, const HeadView::Access& rows, std::size_t i, float* out) noexcept {
    const Config& c = *h.config;
    const unsigned bits = kernels::bits_of(c.keys.dtype);
    const std::byte* codes = rows.key_row(rows.store, i);
    const std::byte* params = h.params.data() + i / c.keys.group * c.param_bytes;
    for (std::size_t ch = 0; ch < c.key_dim; ++ch) {
      kernels::GroupParams p;
      std::memcpy(&p, params + ch * kernels::kGroupParamBytes, kernels::kGroupParamBytes);
      out[ch] = std::fma(static_cast<float>(kernels::ref::get_code(codes, ch, bits)), kernels::half::f16_to_f32(p.scale),
                         kernels::half::f16_to_f32(p.min));
    }
  }

  // Encodes G rows of floats as group g (its first token `first`): codes into the layout's key
  // rows, the pairs into the group's slot (appended when g is the next group).
  static void write_group(Head& h, const HeadView::Access& rows, std::size_t g, std::size_t first,
                          const float* keys) noexcept {
    Config& c = *h.config;
    const std::size_t g_rows = c.keys.group;
    c.table->encode_channels(c.keys.dtype, c.key_dim, g_rows, keys, c.key_dim, c.block.data());
    for (std::size_t t = 0; t < g_rows; ++t)
      std::memcpy(rows.key_row(rows.store, first + t), c.block.data() + t * c.code_bytes, c.code_bytes);
    if ((g + 1) * c.param_bytes > h.params.size()) h.params.resize((g + 1) * c.param_bytes);  // within reserve()
    std::memcpy(h.params.data() + g * c.param_bytes, c.block.data() + g_rows * c.code_bytes, c.param_bytes);
  }

  // Freezes the oldest m tail tokens (a multiple of G): keys into groups, values into the
  // layout's value rows, the rest of the tail moved to its front.
  void freeze(Head& h, const HeadView::Access& rows, std::size_t m) noexcept {
    Config& c = *config_;
    const float* keys = reinterpret_cast<const float*>(h.tail_keys.data());
    if (c.tail.dtype != kernels::Dtype::f32) {
      c.table->decode_rows(c.tail, c.key_dim, h.tail_keys.data(), c.tail_key_bytes, m, c.floats.data(), c.key_dim);
      keys = c.floats.data();
    }
    for (std::size_t g = 0; g * c.keys.group < m; ++g)
      write_group(h, rows, h.frozen / c.keys.group + g, h.frozen + g * c.keys.group, keys + g * c.keys.group * c.key_dim);
    const float* values = reinterpret_cast<const float*>(h.tail_values.data());
    if (c.tail.dtype != kernels::Dtype::f32) {
      c.table->decode_rows(c.tail, c.value_dim, h.tail_values.data(), c.tail_value_bytes, m, c.floats.data(),
                           c.value_dim);
      values = c.floats.data();
    }
    for (std::size_t t = 0; t < m; ++t)
      c.table->encode_rows(c.value, c.value_dim, values + t * c.value_dim, 0, 1, rows.value_row(rows.store, h.frozen + t),
                           0);
    h.frozen += m;
    h.tail -= m;
    std::memmove(h.tail_keys.data(), h.tail_keys.data() + m * c.tail_key_bytes, h.tail * c.tail_key_bytes);
    std::memmove(h.tail_values.data(), h.tail_values.data() + m * c.tail_value_bytes, h.tail * c.tail_value_bytes);
  }

  std::unique_ptr<Config> config_;
  std::vector<Head> heads_;
};

}  // namespace detail
}  // namespace kvc
