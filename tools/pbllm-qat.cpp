// pbllm-qat MODEL DATASET: PB-LLM's quantization-aware training (the
// reference's qat/run_qat.py): every Linear partially binarized, the latent
// weights trained; one line per optimizer step, perplexity before and after,
// a saved Hugging Face folder, checkpoints a killed run resumes from.
#include <ATen/Context.h>
#include <torch/version.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>

#include "pbllm/core/check.h"
#include "pbllm/core/interrupt.h"
#include "pbllm/data/datasets.h"
#include "pbllm/eval/evaluate.h"
#include "pbllm/io/atomic_file.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/io/hf_export.h"
#include "pbllm/io/output_folder.h"
#include "pbllm/io/sha256.h"
#include "pbllm/model/decoder.h"
#include "pbllm/model/device.h"
#include "pbllm/pack/mask_codec.h"
#include "pbllm/qat/binarized_model.h"
#include "pbllm/qat/trainer.h"
#include "pbllm/quant/run_state.h"
#include "tool_main.h"

namespace {

using pbllm::str_cat;

struct Arguments {
  std::string model, dataset, method = "xnor_outlier", masks, data_dir, save, eval, json, device = "cpu", format = "hf";
  std::string command;  // as typed, for the packed file's metadata
  int64_t seqlen = 0, max_windows = 0, checkpoint_every = 50;
  int64_t seed = 0;
  bool save_given = false, eval_given = false, overwrite = false, restart = false;
  pbllm::qat::BinarizationOptions binarization;
  pbllm::qat::TrainingOptions training;
};

void add_flags(CLI::App& app, Arguments& a) {
  app.add_option("model", a.model, "checkpoint directory or ORG/NAME in the Hugging Face cache")->required();
  app.add_option("dataset", a.dataset,
                 "training text: ptb, wikitext2, c4 or text:PATH (the reference's red_pajama is not available "
                 "offline: give its text as text:PATH)")
      ->required();
  app.add_option("--binarization_method,--binarization-method", a.method, "xnor_outlier or xnor_outlier_hessian");
  app.add_option("--outlier_fraction,--outlier-fraction", a.binarization.outlier_fraction,
                 "fraction of weights kept at 8 bits (0 < F < 1)");
  app.add_option("--masks", a.masks,
                 "xnor_outlier_hessian: the packed checkpoint of pbllm-quantize --salient_metric hessian "
                 "--low_frac 1-F --format pb, whose salient weights are the outliers");
  app.add_option("--train_steps,--train-steps,-s", a.training.steps, "optimizer steps")->check(pbllm::tools::count_range());
  app.add_option("--lr,--learning_rate,--learning-rate", a.training.learning_rate, "peak learning rate");
  app.add_option("--batch_size,--batch-size,--per_device_train_batch_size", a.training.batch, "windows per forward")
      ->check(pbllm::tools::count_range());
  app.add_option("--gradient_accumulation_steps,--gradient-accumulation-steps", a.training.accumulation,
                 "forwards per optimizer step")
      ->check(pbllm::tools::count_range());
  app.add_option("--warmup_ratio,--warmup-ratio", a.training.warmup_fraction, "linear warmup, as a fraction of the steps");
  app.add_option("--weight_decay,--weight-decay", a.training.weight_decay, "AdamW's decoupled weight decay");
  app.add_option("--max_grad_norm,--max-grad-norm", a.training.max_grad_norm, "clip the gradients' global norm (0: off)");
  app.add_option("--seqlen", a.seqlen, "tokens per training window (default: min(512, the model's context))")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  app.add_option("--seed", a.seed, "random.seed for drawing the training windows")
      ->check(CLI::Range(int64_t{0}, std::numeric_limits<int64_t>::max()));
  app.add_flag("--train_outlier,--train-outlier", a.binarization.train_outliers, "train the 8-bit outliers too");
  app.add_flag("--zero-point-unrounded,--zero_point_unrounded", a.binarization.corrections.zero_point,
               "correction: the 8-bit zero point is each row's min, not round(min) (whose codes wrap modulo 256)");
  app.add_flag("--per-row-scale,--per_row_scale", a.binarization.corrections.per_row_scale,
               "correction: a binary scale per output row, not one per matrix");
  app.add_flag("--fresh-scale,--fresh_scale", a.binarization.corrections.fresh_scale,
               "correction: the saved weights' scale from the final latent weights, not the last step's");
  app.add_flag("--keep-head,--keep_head", a.binarization.corrections.keep_head,
               "keep the head (lm_head) full precision and frozen; the reference binarizes it");
  app.add_option("--data-dir,--data_dir", a.data_dir, "dataset folder (default: $PBLLM_DATA, else the bundled data/)");
  app.add_option("--device", a.device, "cpu, cuda or cuda:N (CUDA trains with bf16 autocast)");
  app.add_option("--save", a.save, "write the trained model as a Hugging Face folder (fake-quant weights)");
  app.add_option("--format", a.format,
                 "--save as hf (fake-quant weights in the checkpoint's dtype) or pb (packed: 8-bit outliers, 1-bit rest)")
      ->check(CLI::IsMember({"hf", "pb"}));
  app.add_flag("--overwrite", a.overwrite, "let --save replace a non-empty folder that is not an earlier pbllm output");
  app.add_option("--checkpoint_every,--checkpoint-every", a.checkpoint_every,
                 "with --save: keep the training state every N steps in DIR.pbllm-state (0: only on Ctrl-C / SIGTERM)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  app.add_flag("--restart", a.restart, "discard the checkpoint an interrupted run of another command kept");
  app.add_option("--eval", a.eval, "perplexity before and after training (default: wikitext2,ptb,c4)")->expected(0, 1);
  app.add_option("--max-windows,--max_windows", a.max_windows, "--eval only the first N windows of each dataset")
      ->check(pbllm::tools::count_range());
  app.add_option("--json", a.json, "write the report (steps, losses, perplexity) to this file too");
}

nlohmann::json arguments_json(const Arguments& a, int64_t seqlen) {
  const auto& b = a.binarization;
  const auto& t = a.training;
  return {{"model", a.model}, {"dataset", a.dataset}, {"binarization_method", a.method},
          {"outlier_fraction", b.outlier_fraction}, {"masks", a.masks}, {"train_steps", t.steps},
          {"lr", t.learning_rate}, {"batch_size", t.batch}, {"gradient_accumulation_steps", t.accumulation},
          {"warmup_ratio", t.warmup_fraction}, {"weight_decay", t.weight_decay}, {"max_grad_norm", t.max_grad_norm},
          {"seqlen", seqlen}, {"seed", a.seed}, {"train_outlier", b.train_outliers},
          {"zero_point_unrounded", b.corrections.zero_point}, {"per_row_scale", b.corrections.per_row_scale},
          {"fresh_scale", b.corrections.fresh_scale}, {"keep_head", b.corrections.keep_head}, {"device", a.device},
          {"max_windows", a.max_windows}, {"format", a.format}};
}

// What decides the trained weights, for the state folder: a resumed run must be the same run.
nlohmann::json run_manifest(const Arguments& a, int64_t seqlen, const pbllm::io::Checkpoint& checkpoint,
                            const std::filesystem::path& text_file) {
  nlohmann::json arguments = arguments_json(a, seqlen);
  arguments.erase("model");
  arguments.erase("max_windows");
  arguments.erase("format");
  nlohmann::json files;
  const nlohmann::json model_files = pbllm::quant::model_file_hashes(checkpoint);  // outlives the loop
  for (const auto& [name, hash] : model_files.items()) files["model's " + name] = hash;
  files["training text " + text_file.filename().string()] = pbllm::io::sha256_file(text_file);
  if (!a.masks.empty())
    files["masks"] = pbllm::io::sha256_file(std::filesystem::path(a.masks) / pbllm::pack::kPackedWeightsFile);
  return {{"state_version", 1}, {"tool", "pbllm-qat"}, {"pbllm_version", PBLLM_VERSION}, {"arguments", arguments},
          {"files", files}};
}

// "12m05s", "41s"
std::string duration(double seconds) {
  const auto s = static_cast<int64_t>(std::llround(std::max(0.0, seconds)));
  return s >= 60 ? str_cat(s / 60, "m", s % 60 < 10 ? "0" : "", s % 60, "s") : str_cat(s, "s");
}

// The bits per weight the binarized Linears need: a sign each, 8 bits per
// outlier and the outlier mask at its entropy bound (what pbllm-quantize's
// packed format nearly reaches); and the reference's own count (CSR with
// 8-bit column indices and row pointers).
std::string bits_line(const pbllm::qat::BinarizedModel& b) {
  const double n = static_cast<double>(b.weights()), k = static_cast<double>(b.outliers());
  const double row_pointers = static_cast<double>(b.row_pointers());
  const double mask = pbllm::pack::mask_entropy_bits_per_weight(b.weights(), b.outliers());
  char line[256];
  std::snprintf(line, sizeof line,
                "bits per weight: 1 (sign) + 8 x %.2f%% (outliers) + %.3f (mask, entropy bound) = %.3f; the "
                "reference's count (CSR) %.3f",
                100 * k / n, mask, 1 + 8 * k / n + mask, 1 + (16 * k + 8 * row_pointers) / n);
  return line;
}

struct Evaluation {
  std::vector<std::string> datasets;
  std::filesystem::path data_dir;
  int64_t seqlen = 0, max_windows = 0;
};

nlohmann::json evaluate(const pbllm::model::DecoderModel& model, const pbllm::tokenizer::Tokenizer& tokenizer,
                        const Evaluation& e, const char* when) {
  pbllm::eval::EvaluationOptions options;
  options.datasets = e.datasets;
  options.data_dir = e.data_dir;
  options.seqlen = e.seqlen;
  options.max_windows = e.max_windows;
  const auto results = pbllm::eval::evaluate_datasets(model, tokenizer, options);
  std::printf("perplexity %s QAT\n%s", when, pbllm::eval::format_results(results, e.seqlen).c_str());
  std::fflush(stdout);
  pbllm::eval::require_some_evaluated(results);
  return pbllm::eval::results_json(results);
}

// Added to an error or interruption once a checkpoint is kept: how to go on.
std::string resume_note(const pbllm::quant::RunState* state, int64_t kept_step) {
  if (state == nullptr || kept_step == 0) return "";
  return str_cat("; the state after step ", kept_step, " is kept in ", state->dir().string(),
                 ": run the same command again to go on from there (--restart discards it)");
}

void write_json(const std::filesystem::path& path, const nlohmann::json& json) {
  pbllm::io::write_file_atomically(path.string(), [&](std::ostream& out) { out << json.dump(2) << "\n"; });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Quantization-aware training of a partially binarized OPT / LLaMA model (PB-LLM's QAT)", "pbllm-qat"};
  Arguments a;
  pbllm::tools::CommonFlags common;
  add_flags(app, a);
  common.add_to(app);
  pbllm::tools::run_tool(app, argc, argv, [&] {
    common.apply();
    for (int i = 0; i < argc; ++i) a.command += str_cat(i ? " " : "", argv[i]);
    const auto start = std::chrono::steady_clock::now();
    a.eval_given = app.count("--eval") > 0;
    a.binarization.selection = pbllm::qat::outlier_selection_from_method(a.method);
    a.binarization.masks = a.masks;
    a.binarization.validate();
    a.training.validate();
    a.save_given = app.count("--save") > 0;
    PBLLM_CHECK(!a.save_given || !a.save.empty(), "--save needs a folder name");
    for (const char* flag : {"--checkpoint_every", "--restart", "--overwrite", "--format"})
      PBLLM_CHECK(a.save_given || app.count(flag) == 0, flag, " needs --save");
    PBLLM_CHECK(a.eval_given || app.count("--max-windows") == 0, "--max-windows needs --eval");
    PBLLM_CHECK(a.format != "pb" || (!a.binarization.train_outliers && a.training.weight_decay == 0),
                "--format pb stores the outliers as codes of their frozen 8-bit grid; --train_outlier and "
                "--weight_decay move them off it: save with --format hf");
    PBLLM_CHECK(a.dataset != "red_pajama" && a.dataset != "Abirate/english_quotes", "the reference's dataset ",
                a.dataset, " is not available offline (pbllm downloads nothing): save its text to a file and give "
                "text:PATH, or train on ptb, wikitext2 or c4");
    const auto dataset = pbllm::data::Dataset::parse(a.dataset);
    Evaluation evaluation;
    evaluation.data_dir = a.data_dir.empty() ? pbllm::data::default_data_dir() : std::filesystem::path(a.data_dir);
    evaluation.max_windows = a.max_windows;
    if (a.eval_given) evaluation.datasets = CLI::detail::split(a.eval.empty() ? "wikitext2,ptb,c4" : a.eval, ',');
    for (const std::string& name : evaluation.datasets) pbllm::data::Dataset::parse(name);
    const auto text_file = pbllm::data::dataset_file(dataset, pbllm::data::Split::calibration, evaluation.data_dir);

    const auto checkpoint = pbllm::io::Checkpoint::open(a.model);
    // What the run reads, which no output may replace.
    std::vector<std::filesystem::path> inputs = {text_file};
    if (!a.masks.empty()) inputs.emplace_back(a.masks);
    if (a.save_given) pbllm::io::check_output_folder(a.save, checkpoint.dir(), a.overwrite, "--save", inputs);
    if (!a.json.empty()) {
      std::vector<std::filesystem::path> others = inputs;
      if (a.save_given) others.insert(others.end(), {a.save, pbllm::quant::state_dir_beside(a.save)});
      pbllm::io::check_output_file(a.json, checkpoint.dir(), "--json", others);
    }
    // The state folder (lock, manifest, checkpoint) before any work: another
    // run on this --save, or a checkpoint of another command, stops it now.
    std::optional<pbllm::quant::RunState> state;
    if (a.save_given)
      state.emplace(pbllm::quant::state_dir_beside(a.save), run_manifest(a, a.seqlen, checkpoint, text_file),
                    a.restart, "pbllm-qat");
    // float32 latent weights and optimizer everywhere; a GPU computes in bf16 under autocast.
    auto model = pbllm::model::DecoderModel::load(checkpoint, pbllm::model::parse_device(a.device), at::kFloat);
    PBLLM_CHECK(model->packed_linears().empty(), checkpoint.dir().string(),
                " is a packed PB checkpoint: train from the original model");
    const auto tokenizer = pbllm::tokenizer::Tokenizer::from_directory(checkpoint.dir());
    const int64_t context = model->config().max_position_embeddings;
    const int64_t seqlen = a.seqlen > 0 ? a.seqlen : std::min<int64_t>(512, context);
    PBLLM_CHECK(seqlen <= context, "--seqlen ", seqlen, " exceeds the model's ", context, " positions");
    evaluation.seqlen = pbllm::eval::default_seqlen(model->config());

    pbllm::qat::BinarizedModel binarized(*model, a.binarization);
    const int64_t per_step = a.training.windows_per_step();
    const double tokens_drawn = static_cast<double>(a.training.steps) * per_step * seqlen;
    PBLLM_CHECK(tokens_drawn <= 1e9, "the run draws its ", tokens_drawn, " training tokens up front (4 bytes each); ",
                "at most 1e9: fewer --train_steps, a smaller batch or --seqlen");
    const auto windows = pbllm::data::calibration_windows(dataset, *tokenizer, evaluation.data_dir,
                                                          a.training.steps * per_step, a.seed, seqlen);
    pbllm::log::info(str_cat("training: ", a.training.steps, " steps of ", per_step, " windows of ", seqlen,
                             " tokens from ", text_file.string(), " (seed ", a.seed, ")"));
    std::printf("binarized %lld Linears (%lld weights, %zu trained tensors); %s\n",
                static_cast<long long>(binarized.binarized_linears()), static_cast<long long>(binarized.weights()),
                binarized.parameter_names().size(), bits_line(binarized).c_str());
    std::fflush(stdout);
    const double flipped = static_cast<double>(binarized.sign_flips()) / binarized.weights();
    if (!a.binarization.corrections.zero_point && flipped > 1e-2)
      pbllm::log::warn(str_cat("the reference's 8-bit pass (zero point round(min), codes wrapped modulo 256) changed the "
                               "sign of ", 100 * flipped, "% of the weights, as the reference does; "
                               "--zero-point-unrounded corrects it"));

    nlohmann::json report = {{"arguments", arguments_json(a, seqlen)},
                             {"versions", {{"pbllm", PBLLM_VERSION}, {"torch", TORCH_VERSION}}},
                             {"training_text", text_file.string()},
                             {"outliers", binarized.outliers()},
                             {"sign_flips", binarized.sign_flips()},
                             {"weights", binarized.weights()}};
    if (!evaluation.datasets.empty()) report["perplexity_before"] = evaluate(*model, *tokenizer, evaluation, "before");

    pbllm::qat::Trainer trainer(*model, binarized, a.training);
    nlohmann::json history = nlohmann::json::array();
    if (state && state->has_checkpoint()) {
      try {
        history = trainer.restore_state(state->checkpoint_file());
      } catch (const std::exception& error) {
        throw pbllm::quant::StateError(str_cat("cannot resume from ", state->checkpoint_file().string(), " (",
                                               error.what(), "): add --restart to start over"));
      }
      std::printf("resumed after step %lld from %s\n", static_cast<long long>(trainer.steps_done()),
                  state->checkpoint_file().c_str());
    }
    int64_t kept_step = trainer.steps_done();
    // Keeps the state after the last step; also after a signal, whose checks
    // would otherwise stop this very write.
    const auto keep = [&] {
      if (!state || trainer.steps_done() == kept_step) return;
      const pbllm::DeferInterrupts finish_this_write;
      trainer.save_state(state->checkpoint_file(), history);
      kept_step = trainer.steps_done();
    };
    // Gradients through a saturated softmax (the reference's wrapped 8-bit
    // weights give logits in the hundreds) are denormal floats, on which the
    // CPU's arithmetic is ~100x slower: flushed to 0 while training, a SmolLM2
    // step takes 20 s instead of 28 (measured), and no value above 1e-38
    // changes. Not while evaluating or saving: pbllm-eval does not flush.
    struct FlushDenormalsWhileTraining {
      FlushDenormalsWhileTraining() { at::globalContext().setFlushDenormal(true); }
      ~FlushDenormalsWhileTraining() { at::globalContext().setFlushDenormal(false); }
    };
    std::optional<FlushDenormalsWhileTraining> flushing(std::in_place);
    const auto training_start = std::chrono::steady_clock::now();
    const int64_t first_step = trainer.steps_done();
    try {
      while (trainer.steps_done() < a.training.steps) {
        pbllm::check_interrupted();
        const auto begin = windows.begin() + trainer.steps_done() * per_step;
        const auto r = trainer.step(std::vector<std::vector<int32_t>>(begin, begin + per_step));
        const double tokens_per_second = per_step * seqlen / r.seconds;
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - training_start).count();
        const double left = elapsed / (r.step - first_step) * (a.training.steps - r.step);
        std::printf("step %5lld/%lld  loss %8.4f  lr %.3e  grad-norm %8.3f  %7.0f tokens/s  %s left\n",
                    static_cast<long long>(r.step), static_cast<long long>(a.training.steps), r.loss, r.learning_rate,
                    r.grad_norm, tokens_per_second, duration(left).c_str());
        std::fflush(stdout);
        PBLLM_CHECK(std::isfinite(r.loss), "the loss is ", r.loss, " at step ", r.step, ": lower --lr");
        history.push_back({{"step", r.step}, {"loss", r.loss}, {"lr", r.learning_rate}, {"grad_norm", r.grad_norm},
                           {"seconds", r.seconds}, {"tokens_per_second", tokens_per_second}});
        if (a.checkpoint_every > 0 && r.step % a.checkpoint_every == 0) keep();
        pbllm::signal_self_for_test("step", r.step);
      }
    } catch (const pbllm::Interrupted& stop) {
      keep();
      throw pbllm::Interrupted(stop.signal(), resume_note(state ? &*state : nullptr, kept_step));
    } catch (const pbllm::quant::StateError&) {
      throw;
    } catch (const pbllm::Error& error) {  // e.g. a NaN loss: the last checkpoint stays as it was
      throw pbllm::Error(str_cat(error.what(), resume_note(state ? &*state : nullptr, kept_step)));
    }
    flushing.reset();
    keep();  // an evaluation or save that fails must not lose the training
    double seconds = 0, tokens = 0;
    for (const auto& step : history) {
      seconds += step.at("seconds").get<double>();
      tokens += static_cast<double>(per_step * seqlen);
    }
    const double peak_gib = static_cast<double>(pbllm::model::peak_memory_bytes(model->device())) / (1 << 30);
    std::printf("trained %lld steps (%.0f tokens) in %s: %.0f tokens/s, final loss %.4f, peak memory %.2f GiB\n",
                static_cast<long long>(a.training.steps), tokens, duration(seconds).c_str(), tokens / seconds,
                history.back().at("loss").get<double>(), peak_gib);
    report["steps"] = history;
    report["totals"] = {{"training_seconds", seconds}, {"tokens", tokens}, {"tokens_per_second", tokens / seconds},
                        {"peak_memory_gib", peak_gib}};
    if (!evaluation.datasets.empty()) report["perplexity_after"] = evaluate(*model, *tokenizer, evaluation, "after");
    report["seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (a.save_given) {
      pbllm::io::check_output_folder(a.save, checkpoint.dir(), a.overwrite, "--save", inputs);  // again: hours have passed
      nlohmann::json settings = report.at("arguments");
      settings["tool"] = "pbllm-qat";
      settings["pbllm_version"] = PBLLM_VERSION;
      settings["command"] = a.command;
      try {
        std::printf("%s",
                    pbllm::qat::save_trained_model(binarized, checkpoint, a.save, a.format == "pb", settings, report)
                        .c_str());
      } catch (const pbllm::Error& error) {
        throw pbllm::Error(str_cat(error.what(), resume_note(state ? &*state : nullptr, kept_step),
                                   a.format == "pb" ? " (or with --format hf)" : ""));
      }
    }
    if (!a.json.empty()) write_json(a.json, report);
    if (state) state->remove();  // the run is complete
  });
}
