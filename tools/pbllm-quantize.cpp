// pbllm-quantize MODEL DATASET METHOD: GPTQ-PB with the reference run.py's
// arguments; one line per Linear, a summary, optional perplexity and a saved
// Hugging Face folder with report.json.
#include <torch/version.h>

#include <chrono>
#include <optional>
#include <cstdio>

#include "pbllm/core/check.h"
#include "pbllm/data/datasets.h"
#include "pbllm/eval/evaluate.h"
#include "pbllm/io/atomic_file.h"
#include "pbllm/io/checkpoint.h"
#include "pbllm/io/hf_export.h"
#include "pbllm/io/output_folder.h"
#include "pbllm/io/sha256.h"
#include "pbllm/model/decoder.h"
#include "pbllm/model/device.h"
#include "pbllm/pack/packed_checkpoint.h"
#include "pbllm/quant/layer_driver.h"
#include "pbllm/quant/run_plan.h"
#include "pbllm/quant/run_state.h"
#include "pbllm/report/profile.h"
#include "tool_main.h"

namespace {

using pbllm::str_cat;

struct Arguments {
  std::string model, dataset, method, metric = "magnitude", inverse_factor = "one-cholesky", data_dir, save, eval, json, format = "hf";
  std::string calibration_dtype = "auto";
  int64_t nsamples = 128, seqlen = 0, max_windows = 0;
  uint64_t seed = 0;
  pbllm::tools::DeviceFlags device;
  bool save_given = false, eval_given = false, overwrite = false, restart = false, dry_run = false, force = false;
  std::string command;  // the command line, for the packed file's metadata
  pbllm::quant::GptqPbOptions gptq;
  pbllm::quant::LinearSelection selection;
};

void add_flags(CLI::App& app, Arguments& a) {
  app.add_option("model", a.model, "checkpoint directory or ORG/NAME in the Hugging Face cache")->required();
  app.add_option("dataset", a.dataset, "calibration data: wikitext2, ptb, c4 or text:PATH")->required();
  app.add_option("low_quant_method", a.method, "low-bit method for the binarized weights")
      ->required()
      ->check(CLI::IsMember(pbllm::low_bit_method_names()));
  app.add_option("--low_frac,--low-frac", a.gptq.low_frac, "binarized fraction (0.9 keeps 10% salient)");
  app.add_option("--high_bit,--high-bit", a.gptq.high_bit, "bits of the salient weights (1..16)");
  app.add_option("--salient_metric,--salient-metric", a.metric, "magnitude or hessian")
      ->check(CLI::IsMember({"magnitude", "hessian"}));
  app.add_option("--inverse-factor,--inverse_factor", a.inverse_factor,
                 "one-cholesky (one Cholesky and one triangular inverse; the default) or reference (the reference's three factorisations, its exact roundings)")
      ->check(CLI::IsMember({"reference", "one-cholesky"}));
  app.add_option("--nsamples", a.nsamples, "calibration windows")->check(pbllm::tools::count_range());
  app.add_option("--calibration-dtype,--calibration_dtype", a.calibration_dtype,
                 "the calibration activations between layers: auto (the default: a float16 / bfloat16 "
                 "checkpoint's own dtype, else compute), compute (the compute dtype), float16 or bfloat16 "
                 "(half the memory; each window still computes in the compute dtype)")
      ->check(CLI::IsMember({"auto", "compute", "float16", "bfloat16"}));
  app.add_option("--seed", a.seed, "random.seed for the calibration windows");
  app.add_option("--seqlen", a.seqlen, "window length (default: min(2048, the model's context))")
      ->check(CLI::Range(int64_t{2}, int64_t{1} << 20));
  app.add_option("--percdamp", a.gptq.percdamp, "damping, as a fraction of the mean Hessian diagonal");
  app.add_option("--blocksize", a.gptq.blocksize, "columns per GPTQ block");
  app.add_option("--groupsize", a.gptq.groupsize, "columns per salient / low-bit group (-1: whole rows)");
  app.add_option("--minlayer", a.selection.minlayer, "quantize layers with index >= this");
  app.add_option("--maxlayer", a.selection.maxlayer, "quantize layers with index < this");
  app.add_option("--quant_only,--quant-only", a.selection.quant_only, "quantize only Linears whose name contains this");
  app.add_flag("--invert", a.selection.invert, "invert the selection above");
  app.add_flag("--disable_gptq,--disable-gptq", a.gptq.disable_gptq, "round to nearest, no error compensation");
  app.add_flag("--stats-over-binarized,--stats_over_binarized", a.gptq.low.statistics_over_binarized_only,
               "correction: xnor / sign statistics over the binarized weights only");
  app.add_flag("--high-range-from-salient,--high_range_from_salient", a.gptq.high_range_from_salient,
               "correction: the high-bit range from the salient weights only");
  app.add_flag("--zero-point-per-row,--zero_point_per_row", a.gptq.low.zero_point_per_row,
               "correction: 2bit / 4bit zero point from each row's own scale");
  app.add_option("--data-dir,--data_dir", a.data_dir, "dataset folder (default: $PBLLM_DATA, else the bundled data/)");
  a.device.add_to(app);
  app.add_option("--save", a.save, "write the quantized model as a Hugging Face folder (default name under output/)")
      ->expected(0, 1);
  app.add_option("--format", a.format, "--save as hf (fake-quant weights in the checkpoint's dtype) or pb (packed)")
      ->check(CLI::IsMember({"hf", "pb"}));
  app.add_flag("--overwrite", a.overwrite, "let --save replace a non-empty folder that is not an earlier pbllm output");
  app.add_flag("--restart", a.restart,
               "discard the layers an interrupted run of another command kept (DIR.pbllm-state beside --save)");
  app.add_flag("--dry-run,--dry_run", a.dry_run, "print the memory and time plan and exit");
  app.add_flag("--force", a.force, "run even when the plan's peak memory exceeds what is available");
  app.add_option("--eval", a.eval, "perplexity after quantizing (default: wikitext2,ptb,c4)")->expected(0, 1);
  app.add_option("--max-windows,--max_windows", a.max_windows, "--eval only the first N windows of each dataset")
      ->check(pbllm::tools::count_range());
  app.add_option("--json", a.json, "write report.json's content to this file too");
}

// The reference's save name: <model>_<dataset>_<method>_<low_frac>_<high_bit>_<groupsize>_<metric>.
std::string default_save_dir(const Arguments& a) {
  std::string model = a.model;
  for (char& c : model)
    if (c == '/') c = '_';
  return str_cat("output/", model, "_", a.dataset.substr(0, a.dataset.find(':')), "_", a.method, "_", a.gptq.low_frac,
                 "_", a.gptq.high_bit, "_", a.gptq.groupsize, "_", a.metric);
}

void print_linear(const pbllm::quant::LinearReport& r) {
  std::printf("[layer %3lld] %-18s %6lld x %-6lld salient %5.2f%%  loss %12.4f  %8.1f ms%s%s\n", (long long)r.layer,
              r.name.c_str(), (long long)r.rows, (long long)r.columns, 100 * r.salient_fraction, r.loss,
              1000 * r.seconds, r.damping_retries ? str_cat("  (percdamp raised to ", r.percdamp_used, ")").c_str() : "",
              r.kept ? "  (kept by the interrupted run)" : "");
  std::fflush(stdout);
}

nlohmann::json arguments_json(const Arguments& a, int64_t seqlen) {
  return {{"model", a.model}, {"dataset", a.dataset}, {"low_quant_method", a.method},
          {"low_frac", a.gptq.low_frac}, {"high_bit", a.gptq.high_bit}, {"salient_metric", a.metric},
          {"nsamples", a.nsamples}, {"seed", a.seed}, {"seqlen", seqlen}, {"percdamp", a.gptq.percdamp},
          {"inverse_factor", a.inverse_factor},
          {"blocksize", a.gptq.blocksize}, {"groupsize", a.gptq.groupsize}, {"minlayer", a.selection.minlayer},
          {"maxlayer", a.selection.maxlayer}, {"quant_only", a.selection.quant_only}, {"invert", a.selection.invert},
          {"disable_gptq", a.gptq.disable_gptq}, {"stats_over_binarized", a.gptq.low.statistics_over_binarized_only},
          {"high_range_from_salient", a.gptq.high_range_from_salient},
          {"zero_point_per_row", a.gptq.low.zero_point_per_row}, {"device", a.device.device},
          {"compute_dtype", a.device.compute_dtype}, {"calibration_dtype", a.calibration_dtype},
          {"max_windows", a.max_windows}, {"format", a.format}};
}

// What decides the quantized weights, for the state folder: a resumed run must be the same run.
nlohmann::json run_manifest(const Arguments& a, int64_t seqlen, const pbllm::io::Checkpoint& checkpoint,
                            const std::filesystem::path& calibration_file, const std::string& calibration_sha256) {
  nlohmann::json arguments = arguments_json(a, seqlen);
  arguments.erase("model");        // its files' hashes say more than its path
  arguments.erase("max_windows");  // evaluation only
  nlohmann::json files;
  const nlohmann::json model_files = pbllm::quant::model_file_hashes(checkpoint);
  for (const auto& [name, hash] : model_files.items()) files["model's " + name] = hash;
  files["calibration text " + calibration_file.filename().string()] = calibration_sha256;
  return {{"state_version", 1}, {"pbllm_version", PBLLM_VERSION}, {"arguments", arguments}, {"files", files}};
}

// Added to an error or interruption once layers are kept: how to go on.
std::string resume_note(const pbllm::quant::RunState* state) {
  if (state == nullptr || state->finished_layers() == 0) return "";
  return str_cat("; layers 0..", state->finished_layers() - 1, " are kept in ", state->dir().string(),
                 ": run the same command again to resume after them (--restart discards them)");
}

// What the command resolves to before the work starts.
struct Run {
  pbllm::data::Dataset dataset;
  std::filesystem::path data_dir, calibration_file, save_dir;
  std::string calibration_sha256;
  int64_t seqlen = 0;
  std::chrono::steady_clock::time_point start;
};

// The plan of this run (printed); an error when it does not fit, unless --force.
void check_plan(const Arguments& a, const Run& run, const pbllm::model::DecoderModel& model, bool evaluate) {
  pbllm::quant::RunShape shape;
  shape.windows = a.nsamples;
  shape.seqlen = run.seqlen;
  shape.selection = a.selection;
  shape.blocksize = a.gptq.blocksize;
  shape.inverse_factor = a.gptq.inverse_factor;
  shape.packed = a.format == "pb";
  shape.eval_seqlen = evaluate ? run.seqlen : 0;
  shape.calibration_dtype = a.gptq.calibration_dtype;
  const auto plan = pbllm::quant::plan_run(model, shape);
  // The floors' rates: float32 for GPTQ-PB, the compute dtype's for the forward and the Hessians.
  const bool float32 = model.compute_dtype() == at::kFloat;
  pbllm::report::run_profile().set_gemm_rates(
      plan.gemm_flops_per_second,
      float32 ? plan.gemm_flops_per_second : pbllm::quant::measure_gemm_rate(model.device(), model.compute_dtype()));
  std::printf("%s", plan.format().c_str());
  std::fflush(stdout);
  // 16-bit activations help where they are float32 now (the CPU's compute dtype).
  const bool float32_activations = a.gptq.calibration_dtype == at::ScalarType::Undefined && float32;
  for (const auto& memory : plan.memories)
    PBLLM_CHECK(memory.fits() || a.force || a.dry_run, "the plan needs ", memory.peak_bytes >> 20, " MiB on ",
                memory.where, " but ", (memory.available_bytes + memory.in_use_bytes) >> 20,
                " MiB are available: lower --nsamples / --seqlen, ",
                float32_activations ? "hold the calibration activations in 16 bits (--calibration-dtype bfloat16), " : "",
                "free memory, or add --force to run anyway");
}

// report.json's content, replacing `path` atomically.
void write_report(const std::filesystem::path& path, const nlohmann::json& report) {
  pbllm::io::write_file_atomically(path.string(), [&](std::ostream& out) { out << report.dump(2) << "\n"; });
}

// The producing settings, for the packed file's metadata.
nlohmann::json packed_settings(const Arguments& a) {
  return {{"method", a.method}, {"low_frac", a.gptq.low_frac}, {"high_bit", a.gptq.high_bit},
          {"groupsize", a.gptq.groupsize}, {"salient_metric", a.metric}, {"command", a.command},
          {"pbllm_version", PBLLM_VERSION}};
}

// Writes --save DIR in the chosen format, measured and with the sizes in report.json.
void save_model(const Arguments& a, const pbllm::io::Checkpoint& source, const pbllm::model::DecoderModel& model,
                const pbllm::pack::PackedLinears& packed, const std::filesystem::path& dir, nlohmann::json& report) {
  const pbllm::io::NamedTensors tensors(model.weights().begin(), model.weights().end());
  std::printf("%s", pbllm::pack::save_model_folder(source, dir, tensors, a.format == "pb" ? &packed : nullptr,
                                                    packed_settings(a), {}, model.parameter_count(),
                                                    model.parameter_count(), report)
                        .c_str());
}

// Calibration, the layer-by-layer quantization (kept in `state` as it goes),
// the summary and --save; returns the report.
nlohmann::json quantize_and_save(const Arguments& a, const Run& run, const pbllm::io::Checkpoint& checkpoint,
                                 pbllm::model::DecoderModel& model, const pbllm::tokenizer::Tokenizer& tokenizer,
                                 pbllm::quant::RunState* state) {
  std::vector<std::vector<int32_t>> windows;
  {
    const auto timed = pbllm::report::timed(pbllm::report::Phase::data);
    windows = pbllm::data::calibration_windows(run.dataset, tokenizer, run.data_dir, a.nsamples, a.seed, run.seqlen);
  }
  pbllm::log::info(str_cat("calibration: ", windows.size(), " windows of ", run.seqlen, " tokens from ",
                           run.calibration_file.string(), " (seed ", a.seed, ")"));

  pbllm::pack::PackedLinears packed;
  const auto reports = pbllm::quant::quantize_layers(model, windows, a.gptq, a.selection, print_linear,
                                                     a.format == "pb" ? &packed : nullptr, state);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - run.start).count();
  double loss = 0, salient_weights = 0, weights = 0;
  for (const auto& r : reports) {
    loss += r.loss;
    salient_weights += r.salient_fraction * r.rows * r.columns;
    weights += static_cast<double>(r.rows) * r.columns;
  }
  const double salient = weights > 0 ? salient_weights / weights : 0;
  const double peak_gib = static_cast<double>(pbllm::model::peak_memory_bytes(model.device())) / (1 << 30);
  std::printf("quantized %zu Linears (%.0f weights) in %.1f s, peak memory %.2f GiB on %s: total loss %.4f, "
              "salient %.2f%% at %d bits, the rest %s\n",
              reports.size(), weights, seconds, peak_gib, model.device().str().c_str(), loss, 100 * salient,
              a.gptq.high_bit, a.method.c_str());

  nlohmann::json report = {
      {"arguments", arguments_json(a, run.seqlen)},
      {"versions", {{"pbllm", PBLLM_VERSION}, {"torch", TORCH_VERSION}}},
      {"calibration", {{"file", run.calibration_file.string()}, {"sha256", run.calibration_sha256},
                       {"windows", windows.size()}, {"seqlen", run.seqlen}}},
      {"linears", pbllm::quant::linear_reports_json(reports)},
      {"totals", {{"loss", loss}, {"salient_fraction", salient}, {"seconds", seconds},
                   {"peak_memory_gib", peak_gib}, {"linears", reports.size()}}}};
  // Saved before --eval, so a failing evaluation cannot throw the quantization away.
  if (a.save_given) {
    pbllm::io::check_output_folder(run.save_dir, checkpoint.dir(), a.overwrite, "--save");  // again: an hour has passed
    const auto timed = pbllm::report::timed(pbllm::report::Phase::save);
    save_model(a, checkpoint, model, packed, run.save_dir, report);
  }
  return report;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Quantize a Hugging Face OPT / LLaMA checkpoint with GPTQ-PB (partially binarized LLMs)",
               "pbllm-quantize"};
  Arguments a;
  pbllm::tools::CommonFlags common;
  add_flags(app, a);
  common.add_to(app);
  pbllm::tools::run_tool(app, argc, argv, [&] {
    common.apply();
    a.save_given = app.count("--save") > 0;
    for (int i = 0; i < argc; ++i) a.command += str_cat(i ? " " : "", argv[i]);
    a.eval_given = app.count("--eval") > 0;
    PBLLM_CHECK(a.save_given || app.count("--format") == 0, "--format ", a.format, " needs --save");
    a.gptq.low.method = pbllm::low_bit_method_from_name(a.method);
    a.gptq.metric = pbllm::quant::salient_metric_from_name(a.metric);
    a.gptq.inverse_factor = pbllm::quant::inverse_factor_from_name(a.inverse_factor);
    if (a.calibration_dtype == "float16" || a.calibration_dtype == "bfloat16")
      a.gptq.calibration_dtype = a.calibration_dtype == "float16" ? at::kHalf : at::kBFloat16;
    a.gptq.validate();  // one-line errors before anything is loaded
    Run run{pbllm::data::Dataset::parse(a.dataset)};
    run.data_dir = a.data_dir.empty() ? pbllm::data::default_data_dir() : std::filesystem::path(a.data_dir);
    run.calibration_file = pbllm::data::dataset_file(run.dataset, pbllm::data::Split::calibration, run.data_dir);
    std::vector<std::string> eval_datasets;
    if (a.eval_given) eval_datasets = CLI::detail::split(a.eval.empty() ? "wikitext2,ptb,c4" : a.eval, ',');
    for (const std::string& name : eval_datasets) pbllm::data::Dataset::parse(name);

    run.start = std::chrono::steady_clock::now();
    auto& profile = pbllm::report::run_profile();
    if (const at::Device device = pbllm::model::parse_device(a.device.device); device.is_cuda())
      profile.set_synchronizer([device] { pbllm::model::synchronize(device); });  // a GPU's work in its own phase
    std::optional<pbllm::report::Profile::Scope> loading;
    loading.emplace(profile, pbllm::report::Phase::load);
    const auto checkpoint = pbllm::io::Checkpoint::open(a.model);
    // The destination is checked before any work: a bad --save fails now, not after an hour.
    run.save_dir = a.save.empty() ? default_save_dir(a) : a.save;
    if (a.save_given) pbllm::io::check_output_folder(run.save_dir, checkpoint.dir(), a.overwrite, "--save");
    if (!a.json.empty()) {
      pbllm::io::check_output_file(a.json, checkpoint.dir(), "--json");
      PBLLM_CHECK(!a.save_given || std::filesystem::weakly_canonical(std::filesystem::absolute(a.json)) !=
                                       std::filesystem::weakly_canonical(std::filesystem::absolute(run.save_dir)),
                  "--json ", a.json, " is the --save folder");
    }
    auto model = a.device.load(checkpoint);
    PBLLM_CHECK(model->packed_linears().empty(), checkpoint.dir().string(),
                " is a packed PB checkpoint: quantize the original model");
    pbllm::quant::require_selected_linears(*model, a.selection);
    if (a.calibration_dtype == "auto") {  // resolved here, so the report and the resume state name what ran
      a.gptq.calibration_dtype = pbllm::quant::auto_calibration_dtype(*model);
      a.calibration_dtype = a.gptq.calibration_dtype == at::ScalarType::Undefined
                                ? "compute"
                                : pbllm::model::compute_dtype_name(a.gptq.calibration_dtype);
      if (a.calibration_dtype != "compute")
        pbllm::log::info(str_cat("calibration activations held in ", a.calibration_dtype,
                                 ", the checkpoint's dtype (--calibration-dtype compute: in the compute dtype)"));
    }
    const auto tokenizer = pbllm::tokenizer::Tokenizer::from_directory(checkpoint.dir());
    loading.reset();
    run.seqlen = a.seqlen > 0 ? a.seqlen : pbllm::eval::default_seqlen(model->config());
    PBLLM_CHECK(run.seqlen <= model->config().max_position_embeddings, "--seqlen ", run.seqlen,
                " exceeds the model's ", model->config().max_position_embeddings, " positions");
    // Before hashing the model's files (minutes at 70B) and before --restart discards anything.
    check_plan(a, run, *model, !eval_datasets.empty());
    if (a.dry_run) return;
    {
      const auto timed = pbllm::report::timed(pbllm::report::Phase::data);
      run.calibration_sha256 = pbllm::io::sha256_file(run.calibration_file);
    }
    // The state folder: one the user must deal with stops the run; one that cannot be made only loses the resume.
    std::optional<pbllm::quant::RunState> kept;
    try {
      const auto timed = pbllm::report::timed(pbllm::report::Phase::load);  // hashes the model's files
      kept.emplace(pbllm::quant::state_dir_beside(run.save_dir),
                   run_manifest(a, run.seqlen, checkpoint, run.calibration_file, run.calibration_sha256), a.restart);
    } catch (const pbllm::quant::StateError&) {
      throw;
    } catch (const pbllm::Error& error) {
      pbllm::log::warn(str_cat("no state folder (", error.what(), "): this run cannot resume after a kill"));
    }
    pbllm::quant::RunState* state = kept ? &*kept : nullptr;
    nlohmann::json report;
    try {
      report = quantize_and_save(a, run, checkpoint, *model, *tokenizer, state);
    } catch (const pbllm::Interrupted& stop) {
      throw pbllm::Interrupted(stop.signal(), resume_note(state));
    } catch (const pbllm::quant::StateError&) {
      throw;  // about the kept layers themselves: resuming is what failed
    } catch (const pbllm::Error& error) {
      throw pbllm::Error(str_cat(error.what(), resume_note(state)));
    }
    std::vector<pbllm::eval::DatasetResult> results;
    if (!eval_datasets.empty()) {
      pbllm::eval::EvaluationOptions options;
      options.datasets = eval_datasets;
      options.data_dir = run.data_dir;
      options.seqlen = run.seqlen;
      options.max_windows = a.max_windows;
      {
        const auto timed = pbllm::report::timed(pbllm::report::Phase::evaluation);
        results = pbllm::eval::evaluate_datasets(*model, *tokenizer, options);
      }
      std::printf("%s", pbllm::eval::format_results(results, run.seqlen).c_str());
      report["perplexity"] = pbllm::eval::results_json(results);
    }
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - run.start).count();
    report["profile"] = profile.to_json(wall);
    std::printf("%s", profile.line(wall).c_str());
    if (a.save_given) write_report(run.save_dir / "report.json", report);
    if (!a.json.empty())
      write_report(a.json, report);
    if (state) state->remove();  // the run is complete
    if (!eval_datasets.empty()) pbllm::eval::require_some_evaluated(results);
  });
}
