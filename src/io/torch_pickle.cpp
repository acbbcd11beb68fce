#include "pbllm/io/torch_pickle.h"

#include <caffe2/serialize/in_memory_adapter.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>

#include "pbllm/core/check.h"

namespace pbllm::io {
namespace {

// How an opcode's argument is laid out (pickletools' argument kinds).
enum class Argument { none, fixed, length_prefixed, line, two_lines };
struct OpcodeShape {
  Argument argument = Argument::none;
  int bytes = 0;         // fixed: the argument's size; length_prefixed: the size of the length
  bool memo = false;     // the argument is a memo index (PUT / GET family)
};

OpcodeShape opcode_shape(uint8_t op, bool* known) {
  *known = true;
  switch (op) {
    case 0x80: case 'K': case 0x82: return {Argument::fixed, 1};          // PROTO, BININT1, EXT1
    case 'M': case 0x83: return {Argument::fixed, 2};                     // BININT2, EXT2
    case 'J': case 0x84: return {Argument::fixed, 4};                     // BININT, EXT4
    case 'G': case 0x95: return {Argument::fixed, 8};                     // BINFLOAT, FRAME
    case 'q': case 'h': return {Argument::fixed, 1, true};                // BINPUT, BINGET
    case 'r': case 'j': return {Argument::fixed, 4, true};                // LONG_BINPUT, LONG_BINGET
    case 0x8c: case 'C': case 'U': case 0x8a: return {Argument::length_prefixed, 1};
    case 'X': case 'B': case 'T': case 0x8b: return {Argument::length_prefixed, 4};
    case 0x8d: case 0x8e: case 0x96: return {Argument::length_prefixed, 8};
    case 'I': case 'L': case 'S': case 'V': case 'F': case 'P': return {Argument::line};
    case 'p': case 'g': return {Argument::line, 0, true};                 // PUT, GET
    case 'c': case 'i': return {Argument::two_lines};                     // GLOBAL, INST
    default: break;
  }
  static const char kNoArgument[] = "().012NRabdelostu}])Q";  // MARK ... EMPTY_TUPLE, BINPERSID
  if (op != 0 && std::strchr(kNoArgument, op) != nullptr) return {};
  if (op >= 0x81 && op <= 0x98) return {};  // NEWOBJ, TUPLE1-3, NEWTRUE/FALSE, sets, STACK_GLOBAL, MEMOIZE, ...
  *known = false;
  return {};
}

uint64_t little_endian(const uint8_t* at, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | at[i];
  return value;
}

// Walks the pickle's opcodes before LibTorch's unpickler sees them: every
// argument must lie inside the data and every memo index below its size.
// LibTorch trusts both (a corrupt LONG_BINPUT index made it grow its memo
// table to tens of GB: found by the fuzzer).
void check_pickle(const uint8_t* data, size_t size, const std::string& path) {
  size_t at = 0;
  while (at < size) {
    const uint8_t op = data[at++];
    if (op == '.') return;  // STOP
    bool known = false;
    const OpcodeShape shape = opcode_shape(op, &known);
    PBLLM_CHECK(known, path, ": unknown pickle opcode ", static_cast<int>(op), " at byte ", at - 1);
    uint64_t argument = 0;
    switch (shape.argument) {
      case Argument::none: break;
      case Argument::fixed:
      case Argument::length_prefixed:
        PBLLM_CHECK(size - at >= static_cast<size_t>(shape.bytes), path, ": the pickle ends inside an opcode");
        argument = little_endian(data + at, shape.bytes);
        at += shape.bytes;
        if (shape.argument == Argument::length_prefixed) {
          PBLLM_CHECK(argument <= size - at, path, ": a pickled string of ", argument, " bytes runs past the ",
                      size, "-byte pickle");
          at += argument;
        }
        break;
      case Argument::line:
      case Argument::two_lines:
        for (int line = 0; line < (shape.argument == Argument::two_lines ? 2 : 1); ++line) {
          const void* end = std::memchr(data + at, '\n', size - at);
          PBLLM_CHECK(end != nullptr, path, ": the pickle ends inside a text argument");
          if (shape.memo) {  // the digits of the line only: strtoull would skip the newline and read on
            const char* first = reinterpret_cast<const char*>(data + at);
            const char* last = static_cast<const char*>(end);
            const auto parsed = std::from_chars(first, last, argument);
            PBLLM_CHECK(first != last && parsed.ec == std::errc() && parsed.ptr == last, path,
                        ": a pickle memo index is not a number");
          }
          at = static_cast<const uint8_t*>(end) - data + 1;
        }
        break;
    }
    // A real pickle has fewer memo entries than bytes.
    PBLLM_CHECK(!shape.memo || argument < size, path, ": pickle memo index ", argument, " is out of range");
  }
  throw Error(str_cat(path, ": the pickle has no STOP opcode (truncated?)"));
}

}  // namespace

std::vector<std::pair<std::string, at::Tensor>> load_torch_state_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  PBLLM_CHECK(in.good(), path, ": cannot open");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // torch.save's zip archives start with a local file header "PK\x03\x04";
  // the legacy (pre-1.6) format is a bare pickle, which LibTorch cannot read.
  PBLLM_CHECK(bytes.size() >= 4 && bytes[0] == 'P' && bytes[1] == 'K', path,
              ": not a torch.save zip archive (legacy .bin format? re-save it with torch>=1.6 or convert to "
              "safetensors)");
  c10::IValue value;
  try {
    caffe2::serialize::PyTorchStreamReader archive(
        std::make_shared<caffe2::serialize::MemoryReadAdapter>(bytes.data(), static_cast<off_t>(bytes.size())));
    const auto [pickle, size] = archive.getRecord("data.pkl");
    check_pickle(static_cast<const uint8_t*>(pickle.get()), size, path);
    value = torch::jit::pickle_load(bytes);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    throw Error(str_cat(path, ": cannot unpickle (", std::string(error.what()).substr(0, 300), ")"));
  }
  PBLLM_CHECK(value.isGenericDict(), path, ": holds a ", value.tagKind(), ", not a state dict");
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& item : value.toGenericDict()) {
    PBLLM_CHECK(item.key().isString(), path, ": a state-dict key is not a string");
    PBLLM_CHECK(item.value().isTensor(), path, ": '", item.key().toStringRef(), "' is not a tensor");
    const at::Tensor& tensor = item.value().toTensor();
    // Numbers a checkpoint holds; the exotic types (sub-byte, quantized, complex) have no use here (a fuzzer finding).
    const bool usable = at::isFloatingType(tensor.scalar_type()) ||
                        at::isIntegralType(tensor.scalar_type(), /*includeBool=*/true);
    PBLLM_CHECK(usable, path, ": '", item.key().toStringRef(), "' has the unsupported dtype ",
                c10::toString(tensor.scalar_type()));
    tensors.emplace_back(item.key().toStringRef(), tensor);
  }
  return tensors;
}

}  // namespace pbllm::io
