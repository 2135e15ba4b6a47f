#include "kvc_engine/transformer.hpp"

namespace kvc::engine {

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
}

void Transformer::embed(std::int32_t token) noexcept {
  const auto row = model_->weights().token_embedding.subspan(std::size_t(token) * dim_, dim_);
  std::copy(row.begin(), row.end(), x_.begin());
}

void Transformer::project_qkv(std::size_t l, std::int32_t position) noexcept {
  const Weights& w = model_->weights();
  ops::rmsnorm(xb_, x_, w.rms_att.subspan(l * dim_, dim_));
  ops::matvec(q_, w.wq.subspan(l * dim_ * dim_, dim_ * dim_), xb_);
  ops::matvec(k_, w.wk.subspan(l * kv_dim_ * dim_, kv_dim_ * dim_), xb_);
  ops::matvec(v_, w.wv.subspan(l * kv_dim_ * dim_, kv_dim_ * dim_), xb_);
  const std::size_t hd = config().head_dim();
  ops::rope(q_, hd, position);
  ops::rope(k_, hd, position);
}

void Transformer::finish_layer(std::size_t l) noexcept {
  const Weights& w = model_->weights();
  ops::matvec(xb2_, w.wo.subspan(l * dim_ * dim_, dim_ * dim_), attention_output(l));
  for (std::size_t i = 0; i < dim_; ++i) x_[i] += xb2_[i];
  ops::rmsnorm(xb_, x_, w.rms_ffn.subspan(l * dim_, dim_));
  ops::matvec(hb_, w.w1.subspan(l * hidden_ * dim_, hidden_ * dim_), xb_);
  ops::matvec(hb2_, w.w3.subspan(l * hidden_ * dim_, hidden_ * dim_), xb_);
  ops::swiglu(hb_, hb2_);
  ops::matvec(xb_, w.w2.subspan(l * dim_ * hidden_, dim_ * hidden_), hb_);
  for (std::size_t i = 0; i < dim_; ++i) x_[i] += xb_[i];
}

void Transformer::classify() noexcept {
  const Weights& w = model_->weights();
  ops::rmsnorm(x_, x_, w.rms_final);
  ops::matvec(logits_, w.classifier, x_);
}

}  // namespace kvc::engine
