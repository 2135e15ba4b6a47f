#include "kvc_engine/transformer.hpp"

#include "kvc/core/error.hpp"

#include <algorithm>

namespace kvc::engine {
namespace {

// out = w x, from the matrix's block-format copy when the model has one (decode is bound by the
// bytes of weights it reads), else from the float32 weights.
void project(std::span<float> out, const std::vector<QuantMatrix>& quant, std::size_t layer,
             std::span<const float> w, std::span<const float> x) noexcept {
  if (layer < quant.size() && !quant[layer].empty())
    ops::matvec_quant(out, quant[layer], x);
  else
    ops::matvec(out, w, x);
}

}  // namespace

Transformer::Transformer(const Model& model)
    : model_(&model),
      dim_(std::size_t(model.config().dim)),
      kv_dim_(model.config().kv_dim()),
      hidden_(std::size_t(model.config().hidden_dim)) {
  x_.resize(dim_);
  xb_.resize(dim_);
  xb2_.resize(dim_);
  hb_.resize(hidden_);
  hb2_.resize(hidden_);
  q_.resize(dim_);
  k_.resize(kv_dim_);
  v_.resize(kv_dim_);
  att_out_.resize(std::size_t(model.config().n_layers) * dim_);
  logits_.resize(std::size_t(model.config().vocab_size));
  rope_.resize(model.config().rotary_dim());
}

void Transformer::embed(std::int32_t token) noexcept {
  // An id past the vocabulary would read past the embedding matrix.
  KVC_CONTRACT(token >= 0 && token < config().vocab_size, "Transformer: token id out of range [0, vocab_size)");
  const auto row = model_->weights().token_embedding.subspan(std::size_t(token) * dim_, dim_);
  std::copy(row.begin(), row.end(), x_.begin());
}

void Transformer::project_qkv(std::size_t l, std::int32_t position) noexcept {
  const Weights& w = model_->weights();
  const QuantWeights& qw = model_->quant_weights();
  ops::rmsnorm(xb_, x_, w.rms_att.subspan(l * dim_, dim_), config().norm_eps);
  project(q_, qw.wq, l, w.wq.subspan(l * dim_ * dim_, dim_ * dim_), xb_);
  project(k_, qw.wk, l, w.wk.subspan(l * kv_dim_ * dim_, kv_dim_ * dim_), xb_);
  project(v_, qw.wv, l, w.wv.subspan(l * kv_dim_ * dim_, kv_dim_ * dim_), xb_);
  if (l == 0) ops::rope_angles(rope_, position, config().rope_base);  // the same for every layer
  const std::size_t hd = config().head_dim();
  ops::rope(q_, hd, rope_);
  ops::rope(k_, hd, rope_);
}

void Transformer::finish_layer(std::size_t l) noexcept {
  const Weights& w = model_->weights();
  const QuantWeights& qw = model_->quant_weights();
  project(xb2_, qw.wo, l, w.wo.subspan(l * dim_ * dim_, dim_ * dim_), attention_output(l));
  for (std::size_t i = 0; i < dim_; ++i) x_[i] += xb2_[i];
  ops::rmsnorm(xb_, x_, w.rms_ffn.subspan(l * dim_, dim_), config().norm_eps);
  project(hb_, qw.w1, l, w.w1.subspan(l * hidden_ * dim_, hidden_ * dim_), xb_);
  project(hb2_, qw.w3, l, w.w3.subspan(l * hidden_ * dim_, hidden_ * dim_), xb_);
  ops::swiglu(hb_, hb2_);
  project(xb_, qw.w2, l, w.w2.subspan(l * dim_ * hidden_, dim_ * hidden_), hb_);
  for (std::size_t i = 0; i < dim_; ++i) x_[i] += xb_[i];
}

void Transformer::classify() noexcept {
  const Weights& w = model_->weights();
  ops::rmsnorm(x_, x_, w.rms_final, config().norm_eps);
  if (const QuantMatrix& q = model_->quant_weights().classifier; !q.empty())
    ops::matvec_quant(logits_, q, x_);
  else
    ops::matvec(logits_, w.classifier, x_);
}

void Transformer::prefill_begin(std::span<const std::int32_t> tokens, std::int32_t first_position) {
  constexpr std::string_view where = "kvc::engine::Transformer::prefill";
  if (tokens.empty()) fail(where, "the chunk of tokens is empty");
  for (std::size_t t = 0; t < tokens.size(); ++t)
    if (tokens[t] < 0 || tokens[t] >= config().vocab_size)
      fail(where, "token {} of the chunk is id {}, outside [0, {})", t, tokens[t], config().vocab_size);
  n_ = tokens.size();
  const std::size_t rot = config().rotary_dim();
  // Grow only: after the largest chunk, prefill does not allocate.
  for (auto* b : {&cx_, &cxb_, &cq_, &catt_}) b->resize(std::max(b->size(), n_ * dim_));
  for (auto* b : {&ck_, &cv_}) b->resize(std::max(b->size(), n_ * kv_dim_));
  for (auto* b : {&ch1_, &ch3_}) b->resize(std::max(b->size(), n_ * hidden_));
  crope_.resize(std::max(crope_.size(), n_ * rot));
  const auto& emb = model_->weights().token_embedding;
  for (std::size_t t = 0; t < n_; ++t) {
    std::copy_n(emb.begin() + std::ptrdiff_t(std::size_t(tokens[t]) * dim_), dim_, cx_.begin() + std::ptrdiff_t(t * dim_));
    ops::rope_angles(std::span(crope_).subspan(t * rot, rot), first_position + std::int32_t(t), config().rope_base);
  }
}

void Transformer::prefill_qkv(std::size_t l) noexcept {
  const Weights& w = model_->weights();
  const std::size_t n = n_, rot = config().rotary_dim(), hd = config().head_dim();
  for (std::size_t t = 0; t < n; ++t)
    ops::rmsnorm(std::span(cxb_).subspan(t * dim_, dim_), std::span(cx_).subspan(t * dim_, dim_),
                 w.rms_att.subspan(l * dim_, dim_), config().norm_eps);
  const auto xb = std::span<const float>(cxb_).first(n * dim_);
  ops::matmul(std::span(cq_).first(n * dim_), w.wq.subspan(l * dim_ * dim_, dim_ * dim_), xb, n);
  ops::matmul(std::span(ck_).first(n * kv_dim_), w.wk.subspan(l * kv_dim_ * dim_, kv_dim_ * dim_), xb, n);
  ops::matmul(std::span(cv_).first(n * kv_dim_), w.wv.subspan(l * kv_dim_ * dim_, kv_dim_ * dim_), xb, n);
  for (std::size_t t = 0; t < n; ++t) {
    const auto cs = std::span<const float>(crope_).subspan(t * rot, rot);
    ops::rope(std::span(cq_).subspan(t * dim_, dim_), hd, cs);
    ops::rope(std::span(ck_).subspan(t * kv_dim_, kv_dim_), hd, cs);
  }
}

void Transformer::prefill_finish_layer(std::size_t l) noexcept {
  const Weights& w = model_->weights();
  const std::size_t n = n_;
  const auto last = std::span<const float>(catt_).subspan((n - 1) * dim_, dim_);
  std::copy(last.begin(), last.end(), att_out_.begin() + std::ptrdiff_t(l * dim_));
  ops::matmul(std::span(cxb_).first(n * dim_), w.wo.subspan(l * dim_ * dim_, dim_ * dim_),
              std::span<const float>(catt_).first(n * dim_), n);
  for (std::size_t i = 0; i < n * dim_; ++i) cx_[i] += cxb_[i];
  for (std::size_t t = 0; t < n; ++t)
    ops::rmsnorm(std::span(cxb_).subspan(t * dim_, dim_), std::span(cx_).subspan(t * dim_, dim_),
                 w.rms_ffn.subspan(l * dim_, dim_), config().norm_eps);
  const auto xb = std::span<const float>(cxb_).first(n * dim_);
  ops::matmul(std::span(ch1_).first(n * hidden_), w.w1.subspan(l * hidden_ * dim_, hidden_ * dim_), xb, n);
  ops::matmul(std::span(ch3_).first(n * hidden_), w.w3.subspan(l * hidden_ * dim_, hidden_ * dim_), xb, n);
  ops::swiglu(std::span(ch1_).first(n * hidden_), std::span<const float>(ch3_).first(n * hidden_));
  ops::matmul(std::span(cxb_).first(n * dim_), w.w2.subspan(l * dim_ * hidden_, dim_ * hidden_),
              std::span<const float>(ch1_).first(n * hidden_), n);
  for (std::size_t i = 0; i < n * dim_; ++i) cx_[i] += cxb_[i];
}

std::span<const float> Transformer::prefill_end(std::span<float> all_logits) {
  const std::size_t n = n_;
  if (!all_logits.empty()) {
    const Weights& w = model_->weights();
    for (std::size_t t = 0; t < n; ++t) {
      const auto row = std::span(cx_).subspan(t * dim_, dim_);
      ops::rmsnorm(std::span(cxb_).subspan(t * dim_, dim_), row, w.rms_final, config().norm_eps);
    }
    ops::matmul(all_logits, w.classifier, std::span<const float>(cxb_).first(n * dim_), n);
  }
  std::copy_n(cq_.begin() + std::ptrdiff_t((n - 1) * dim_), dim_, q_.begin());
  std::copy_n(cx_.begin() + std::ptrdiff_t((n - 1) * dim_), dim_, x_.begin());
  classify();
  return logits_;
}

}  // namespace kvc::engine
